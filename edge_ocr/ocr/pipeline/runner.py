"""image (BGR ndarray) -> OcrResult. No file, database or network access here."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_ocr.ocr.engine import Engine
from edge_ocr.ocr.pipeline import calibration as calibration_stage
from edge_ocr.ocr.pipeline import cls as cls_stage
from edge_ocr.ocr.pipeline import det as det_stage
from edge_ocr.ocr.pipeline import patterns as pattern_stage
from edge_ocr.ocr.pipeline import rec as rec_stage
from edge_ocr.ocr.pipeline import retry as retry_stage
from edge_ocr.ocr.pipeline import spacing as spacing_stage
from edge_ocr.types import ModelRole, OcrResult, PrintProfile, TextLine

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineOptions:
    det: det_stage.DetOptions = field(default_factory=det_stage.DetOptions)
    rec: rec_stage.RecOptions = field(default_factory=rec_stage.RecOptions)
    cls: cls_stage.ClsOptions = field(default_factory=cls_stage.ClsOptions)
    spacing: spacing_stage.SpacingOptions = field(default_factory=spacing_stage.SpacingOptions)
    retry: retry_stage.RetryOptions = field(default_factory=retry_stage.RetryOptions)
    patterns: pattern_stage.PatternOptions = field(default_factory=pattern_stage.PatternOptions)
    calibration: calibration_stage.CalibrationOptions = field(
        default_factory=calibration_stage.CalibrationOptions
    )
    use_cls: bool = False

    @classmethod
    def for_family(
        cls, family: str, model_config: Mapping[str, Any] | None = None, *, raw: bool = False
    ) -> PipelineOptions:
        """A model family's pipeline: our defaults, or with `raw` the reference pipeline's reading
        of the same models (PP-OCRv4: PaddleOCR 2.x; PP-OCRv6: RapidOCR 3.10's defaults).
        `model_config` is what the model's own inference.yml says (recorded by the build)."""
        if family == "ppocrv4-mobile":
            return cls.reference() if raw else cls()
        raise ValueError(f"no pipeline settings for model family {family!r}")

    @classmethod
    def reference(cls) -> PipelineOptions:
        """Exactly what the reference pipeline (PaddleOCR 2.x) does, with none of our
        post-processing: the model build checks engines against the reference with these."""
        return cls(
            det=det_stage.DetOptions(unclip_ratio=1.5, outline_unclip_ratio=None),
            spacing=spacing_stage.SpacingOptions(enabled=False),
            retry=retry_stage.RetryOptions(enabled=False),
            patterns=pattern_stage.PatternOptions(enabled=False),
            calibration=calibration_stage.CalibrationOptions(enabled=False),
        )


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
        self.options = options or PipelineOptions.for_family(engine.files.family, engine.files.model_config)
        self._charset = rec_stage.load_dictionary(Path(engine.files.rec_dict))
        self._rec_opts = self.options.rec

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
    def detect(self, image: np.ndarray) -> list[det_stage.DetBox]:
        """The image's text regions in reading order."""
        det_in = det_stage.preprocess(image, self.options.det)
        prob = self.engine.session(ModelRole.DET).run(det_in.tensor)
        found = det_stage.postprocess(prob, det_in, self.options.det)
        return [found[i] for i in det_stage.sort_reading_order([d.quad for d in found])]

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
                h, w = crops[i].shape[:2]
                ppf = rec_stage.frame_width_px(
                    w, h, batch.shape[3], probs.shape[1], self._rec_opts.image_height
                )
                results[i] = replace(dec, px_per_frame=ppf)
        return [r for r in results if r is not None]

    def _retry_weak_lines(
        self,
        decoded: list[rec_stage.Decoded],
        crops: list[np.ndarray],
        rec_ms: float,
        opts: retry_stage.RetryOptions,
    ) -> tuple[list[rec_stage.Decoded], list[np.ndarray], int]:
        """Read every line from the print profile's up-front variants (`opts.first`), then re-read
        lines still under the confidence threshold from the retry variants, within the budget."""
        best = list(decoded)
        best_crops = list(crops)
        retried: set[int] = set()

        def read(jobs: list[tuple[int, str]]) -> None:
            variants = [retry_stage.VARIANTS[name](crops[i]) for i, name in jobs]
            for (i, name), crop, dec in zip(jobs, variants, self.recognize(variants)):
                retried.add(i)
                if retry_stage.better(dec, best[i], decoded[i], opts):
                    best[i] = dec
                    # word spaces are looked for in the crop's own ink gaps unless the variant moved them
                    best_crops[i] = crops[i] if name in retry_stage.SAME_GEOMETRY else crop

        if opts.first:
            read([(i, name) for name in opts.first for i in range(len(crops))])
        weak = [i for i, d in enumerate(best) if retry_stage.is_weak(d, opts)]
        if not weak:
            return best, best_crops, len(retried)
        per_crop_ms = max(rec_ms / max(len(crops), 1), 1.0)
        allowed = max(1, int(opts.budget_ms / per_crop_ms))
        jobs: list[tuple[int, str]] = []
        for name in opts.variants:  # variant-major: every weak line gets its best bet first
            for i in weak:
                if len(jobs) >= allowed:
                    break
                jobs.append((i, name))
        read(jobs)
        return best, best_crops, len(retried)

    # -- whole image --------------------------------------------------------------------
    def run(
        self,
        image: np.ndarray,
        *,
        det: bool = True,
        cls: bool | None = None,
        print_profile: PrintProfile | str | None = None,
    ) -> OcrResult:
        """OCR one image. With `det=False` the whole image is one text line. `print_profile`
        (a recipe's or station's print) overrides the options' variants for this image."""
        image = _as_bgr(image)
        h, w = image.shape[:2]
        use_cls = self.options.use_cls if cls is None else cls
        timings: dict[str, float] = {}
        t_start = time.perf_counter()
        if det:
            t0 = time.perf_counter()
            regions = self.detect(image)
            timings["det"] = (time.perf_counter() - t0) * 1000
            crops = [det_stage.crop_quad(image, r.quad) for r in regions]
            boxes = [r.outline for r in regions]
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
        own_readings, own_crops = decoded, crops
        retry_opts = self.options.retry
        if print_profile is not None:
            retry_opts = retry_opts.for_print(print_profile)
        if retry_opts.enabled and decoded:
            t0 = time.perf_counter()
            decoded, crops, retried = self._retry_weak_lines(decoded, crops, timings["rec"], retry_opts)
            if retried:
                timings["retry"] = (time.perf_counter() - t0) * 1000
        self.engine.image_done()  # no more inference for this image (Lite frees its predictors)
        t0 = time.perf_counter()
        lines = []
        for box, dec, crop, own, own_crop in zip(boxes, decoded, crops, own_readings, own_crops):
            if det and dec.confidence < self._rec_opts.drop_score:
                continue
            spaced = spacing_stage.recover_spaces(dec, self.options.spacing, crop)
            if retry_opts.spaces_from_crop and dec is not own and crop is own_crop:  # same-geometry variant
                own_text = spacing_stage.recover_spaces(own, self.options.spacing, crop)
                gaps = retry_stage.glyph_gaps(dec, crop)
                spaced = retry_stage.with_spaces_of(spaced, own_text, gaps)
            alternatives = pattern_stage.aligned_alternatives(spaced, dec)
            fixed = pattern_stage.apply_patterns(spaced, self.options.patterns, alternatives)
            quad = tuple((float(x), float(y)) for x, y in box)
            lines.append(
                TextLine(
                    text=fixed.text,
                    confidence=calibration_stage.line_confidence(
                        calibration_stage.LineEvidence(
                            dec, fixed.text, retried=dec is not own, corrected=bool(fixed.changes)
                        ),
                        self.options.calibration,
                        self.options.spacing,
                    ),
                    box=quad,  # type: ignore[arg-type]
                    raw_text=spaced if fixed.changes else None,
                    corrections=fixed.changes,
                )
            )
        timings["post"] = (time.perf_counter() - t0) * 1000
        timings["total"] = (time.perf_counter() - t_start) * 1000
        return OcrResult(
            lines=tuple(lines),
            image_size=(w, h),
            engine=self.engine.name,
            model=self.model_id,
            timings_ms=timings,
        )
