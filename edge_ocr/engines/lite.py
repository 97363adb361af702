"""Paddle Lite engine (`.nb` models from `edge-ocr models build`).

Three traps of paddlelite 2.13rc0 on x86 are handled here (shared/PADDLE_LITE_NOTES.md):

1. `Tensor.from_numpy` copies nothing under numpy 2: we call it to allocate, then write
   through the zero-copy view (`t.numpy()[...] = x`), which works under numpy 1 and 2.
2. Outputs are views into the predictor's memory: we copy them before returning.
3. A predictor fed a smaller input than an earlier one corrupts the heap. Every input is padded
   up to a shape bucket and each bucket has its own predictor, so a predictor only ever sees
   one shape. Outputs are cropped back to the unpadded size.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict

import numpy as np

from edge_ocr.engines.base import Engine, Session
from edge_ocr.errors import EngineUnavailableError, ModelError
from edge_ocr.types import ModelRole

logger = logging.getLogger(__name__)

DET_STEP = 160  # det H and W are padded up to a multiple of this
REC_WIDTHS = (320, 480, 640, 800, 960, 1280, 1600, 1920, 2560, 3200)
BATCH_SIZES = (1, 2, 4, 6, 8, 16)


def _round_up(value: int, choices: tuple[int, ...]) -> int:
    for c in choices:
        if value <= c:
            return c
    step = choices[-1] - choices[-2]
    return choices[-1] + int(math.ceil((value - choices[-1]) / step)) * step


def bucket_shape(role: ModelRole, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The padded shape a Lite predictor is fed for an input of `shape` (N, C, H, W)."""
    n, c, h, w = shape
    if role is ModelRole.DET:
        return (n, c, int(math.ceil(h / DET_STEP) * DET_STEP), int(math.ceil(w / DET_STEP) * DET_STEP))
    if role is ModelRole.REC:
        return (_round_up(n, BATCH_SIZES), c, h, _round_up(w, REC_WIDTHS))
    return (_round_up(n, BATCH_SIZES), c, h, w)


class _LiteSession(Session):
    """A pool of predictors, one per input shape bucket (least recently used dropped first)."""

    def __init__(self, role: ModelRole, path: str, max_predictors: int) -> None:
        self.role = role
        self._path = path
        self._max = max_predictors
        self._pool: OrderedDict[tuple[int, ...], object] = OrderedDict()

    def _predictor(self, shape: tuple[int, ...]) -> object:
        pred = self._pool.get(shape)
        if pred is not None:
            self._pool.move_to_end(shape)
            return pred
        from paddlelite.lite import MobileConfig, create_paddle_predictor

        config = MobileConfig()
        config.set_model_from_file(self._path)
        try:
            pred = create_paddle_predictor(config)
        except Exception as exc:  # pybind raises untyped errors
            raise ModelError(f"cannot load Paddle Lite model {self._path}: {exc}") from exc
        logger.debug("new Lite %s predictor for shape %s", self.role.value, shape)
        self._pool[shape] = pred
        while len(self._pool) > self._max:
            self._pool.popitem(last=False)
        return pred

    def run(self, x: np.ndarray) -> np.ndarray:
        shape = tuple(int(d) for d in x.shape)
        padded_shape = bucket_shape(self.role, shape)
        if padded_shape != shape:
            padded = np.zeros(padded_shape, dtype=np.float32)
            padded[: shape[0], :, : shape[2], : shape[3]] = x
        else:
            padded = np.ascontiguousarray(x, dtype=np.float32)
        pred = self._predictor(padded_shape)
        tensor = pred.get_input(0)  # type: ignore[attr-defined]
        tensor.from_numpy(padded)  # allocates (and copies nothing under numpy 2) ...
        tensor.numpy()[...] = padded  # ... so write through the zero-copy view
        pred.run()  # type: ignore[attr-defined]
        out = np.array(pred.get_output(0).numpy(), copy=True)  # type: ignore[attr-defined]
        return self._crop(out, shape, padded_shape)

    def _crop(self, out: np.ndarray, shape: tuple[int, ...], padded: tuple[int, ...]) -> np.ndarray:
        n = shape[0]
        if self.role is ModelRole.DET:
            return np.ascontiguousarray(out[:n, :, : shape[2], : shape[3]])
        if self.role is ModelRole.REC and out.ndim == 3 and padded[3] != shape[3]:
            frames = int(math.ceil(out.shape[1] * shape[3] / padded[3]))
            return np.ascontiguousarray(out[:n, :frames])
        return np.ascontiguousarray(out[:n])

    def close(self) -> None:
        self._pool.clear()


class LiteEngine(Engine):
    name = "lite"
    model_format = "nb"
    fixed_shapes = True
    rec_batch = 1  # one core per process: batching buys nothing and padding costs

    @classmethod
    def unavailable_reason(cls) -> str | None:
        import importlib.util
        import platform

        if importlib.util.find_spec("paddlelite") is None:
            if platform.machine() not in ("x86_64", "AMD64"):
                return (
                    "paddlelite has no PyPI wheel for this CPU: build Paddle Lite's Python package from its "
                    "ARM release and use the ARM .nb files from `edge-ocr models build`, or use --engine onnx"
                )
            return "paddlelite is not installed: pip install 'edge-ocr[lite]' (Python 3.10, x86-64)"
        return None

    def _load(self, role: ModelRole) -> Session:
        reason = self.unavailable_reason()
        if reason:
            raise EngineUnavailableError(reason)
        max_predictors = 4 if role is ModelRole.REC else 2
        sess = _LiteSession(role, str(self.files.path(role)), max_predictors)
        return sess

    def versions(self) -> dict[str, str]:
        from importlib.metadata import version

        return {"paddlelite": version("paddlelite")}
