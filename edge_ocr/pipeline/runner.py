"""image (BGR ndarray) -> OcrResult. No file, database or network access here."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_ocr.engines.base import Engine
from edge_ocr.pipeline import cls as cls_stage
from edge_ocr.pipeline import det as det_stage
from edge_ocr.pipeline import rec as rec_stage
from edge_ocr.types import ModelRole, OcrResult, TextLine

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineOptions:
    det: det_stage.DetOptions = field(default_factory=det_stage.DetOptions)
    rec: rec_stage.RecOptions = field(default_factory=rec_stage.RecOptions)
    cls: cls_stage.ClsOptions = field(default_factory=cls_stage.ClsOptions)
    use_cls: bool = False


@dataclass(frozen=True)
class RecognisedCrop:
    """One crop's recognition, with what later stages (spacing, retries) may need."""

    decoded: rec_stage.Decoded
    crop: np.ndarray


def _as_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2))
    if image.shape[2] == 4:
        return np.ascontiguousarray(image[:, :, :3])
    return image


class OcrPipeline:
    """Runs DB detection, optional orientation classification and CTC recognition on one engine."""

    def __init__(self, engine: Engine, options: PipelineOptions | None = None) -> None:
        self.engine = engine
        self.options = options or PipelineOptions()
        self._charset = rec_stage.load_dictionary(Path(engine.files.rec_dict))
        rec_opts = self.options.rec
        if engine.rec_batch != rec_opts.batch_size:
            from dataclasses import replace

            rec_opts = replace(rec_opts, batch_size=engine.rec_batch)
        self._rec_opts = rec_opts

    @property
    def engine_name(self) -> str:
        return self.engine.name

    @property
    def model_id(self) -> str:
        return self.engine.files.set_id

    def close(self) -> None:
        self.engine.close()

    def __enter__(self) -> OcrPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- stages -------------------------------------------------------------------------
    def detect(self, image: np.ndarray) -> tuple[list[np.ndarray], list[float]]:
        det_in = det_stage.preprocess(image, self.options.det)
        prob = self.engine.session(ModelRole.DET).run(det_in.tensor)
        boxes, scores = det_stage.postprocess(prob, det_in, self.options.det)
        order = det_stage.sort_reading_order(boxes)
        return [boxes[i] for i in order], [scores[i] for i in order]

    def classify(self, crops: list[np.ndarray]) -> list[np.ndarray]:
        out = list(crops)
        session = self.engine.session(ModelRole.CLS)
        for idx, batch in cls_stage.batches(crops, self.options.cls):
            probs = session.run(batch)
            for i, flip in zip(idx, cls_stage.is_upside_down(probs, self.options.cls.thresh)):
                if flip:
                    out[i] = cls_stage.rotate_180(out[i])
        return out

    def recognize(self, crops: list[np.ndarray]) -> list[rec_stage.Decoded]:
        results: list[rec_stage.Decoded | None] = [None] * len(crops)
        session = self.engine.session(ModelRole.REC)
        for idx, batch in rec_stage.batches_by_width(crops, self._rec_opts):
            probs = session.run(batch)
            for i, dec in zip(idx, rec_stage.ctc_decode(probs, self._charset)):
                results[i] = dec
        return [r for r in results if r is not None]

    # -- whole image --------------------------------------------------------------------
    def run(self, image: np.ndarray, *, det: bool = True, cls: bool | None = None) -> OcrResult:
        """OCR one image. With `det=False` the whole image is one text line."""
        image = _as_bgr(image)
        h, w = image.shape[:2]
        use_cls = self.options.use_cls if cls is None else cls
        timings: dict[str, float] = {}
        t_start = time.perf_counter()
        if det:
            t0 = time.perf_counter()
            boxes, _ = self.detect(image)
            timings["det"] = (time.perf_counter() - t0) * 1000
            crops = [det_stage.crop_quad(image, b) for b in boxes]
        else:
            boxes = [np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=np.float32)]
            crops = [image]
        if use_cls and crops:
            t0 = time.perf_counter()
            crops = self.classify(crops)
            timings["cls"] = (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()
        decoded = self.recognize(crops) if crops else []
        timings["rec"] = (time.perf_counter() - t0) * 1000
        lines = []
        for box, dec in zip(boxes, decoded):
            if det and dec.confidence < self._rec_opts.drop_score:
                continue
            quad = tuple((float(x), float(y)) for x, y in box)
            lines.append(TextLine(text=dec.text, confidence=dec.confidence, box=quad))  # type: ignore[arg-type]
        timings["total"] = (time.perf_counter() - t_start) * 1000
        return OcrResult(
            lines=tuple(lines),
            image_size=(w, h),
            engine=self.engine.name,
            model=self.model_id,
            timings_ms=timings,
        )
