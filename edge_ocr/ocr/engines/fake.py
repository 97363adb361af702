"""A deterministic engine with no model files, for fast tests of everything around OCR.

Detection marks dark pixels (text on a light label), merged horizontally into line regions;
recognition returns a stable pseudo-text derived from the crop's pixels, so the same image
always reads the same and different crops read differently. Orientation is always 0 degrees.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np

from edge_ocr.ocr.engine import Engine, ModelFiles, Session
from edge_ocr.types import ModelRole

FAKE_DICT = Path(__file__).with_name("fake_dict.txt")
_TEXT_LEN = 8
_FRAMES_PER_CHAR = 3


def fake_model_files() -> ModelFiles:
    return ModelFiles(
        set_id="fake/none",
        engine="fake",
        variant="none",
        det=FAKE_DICT,
        rec=FAKE_DICT,
        cls=FAKE_DICT,
        rec_dict=FAKE_DICT,
    )


class _FakeDet(Session):
    role = ModelRole.DET

    def run(self, x: np.ndarray) -> np.ndarray:
        # undo ImageNet normalisation roughly: gray in [0, 1]
        gray = (x[0] * 0.226 + 0.449).mean(axis=0)
        dark = (gray < 0.45).astype(np.uint8)
        h, w = dark.shape
        grow = cv2.getStructuringElement(cv2.MORPH_RECT, (max(5, w // 25), max(5, h // 40)))
        merged = cv2.dilate(dark, grow)
        shrink = cv2.getStructuringElement(cv2.MORPH_RECT, (max(5, w // 25) + 4, max(5, h // 40) + 4))
        merged = cv2.erode(merged, shrink)  # DB maps are shrunk text kernels
        return (merged.astype(np.float32) * 0.95)[None, None]


class _FakeCls(Session):
    role = ModelRole.CLS

    def run(self, x: np.ndarray) -> np.ndarray:
        out = np.zeros((x.shape[0], 2), dtype=np.float32)
        out[:, 0] = 1.0
        return out


class _FakeRec(Session):
    role = ModelRole.REC

    def __init__(self, n_classes: int) -> None:
        self._n = n_classes

    def run(self, x: np.ndarray) -> np.ndarray:
        n, _, _, w = x.shape
        frames = max(w // 8, _TEXT_LEN * _FRAMES_PER_CHAR + 1)
        out = np.zeros((n, frames, self._n), dtype=np.float32)
        out[:, :, 0] = 1.0
        for b in range(n):
            content = np.round(x[b] * 4).astype(np.int8)
            cols = np.nonzero(np.abs(x[b]).sum(axis=(0, 1)) > 0)[0]
            content = content[:, :, : cols[-1] + 1] if len(cols) else content
            digest = hashlib.blake2b(content.tobytes(), digest_size=16).digest()
            conf = 0.80 + (digest[-1] / 255.0) * 0.19
            for k in range(_TEXT_LEN):
                cls_id = 1 + digest[k] % (self._n - 2)
                t = k * _FRAMES_PER_CHAR + 1
                out[b, t, 0] = 1.0 - conf
                out[b, t, cls_id] = conf
        return out


class FakeEngine(Engine):
    name = "fake"
    model_format = "none"

    def __init__(self, files: ModelFiles | None = None, options=None) -> None:
        super().__init__(files or fake_model_files(), options)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None

    def _load(self, role: ModelRole) -> Session:
        if role is ModelRole.DET:
            return _FakeDet()
        if role is ModelRole.CLS:
            return _FakeCls()
        n_chars = len(FAKE_DICT.read_text(encoding="utf-8").splitlines())
        return _FakeRec(n_chars + 2)

    def versions(self) -> dict[str, str]:
        return {"fake": "1"}
