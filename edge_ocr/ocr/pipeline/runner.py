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
from edge_ocr.ocr.pipeline import dots as dots_stage
from edge_ocr.ocr.pipeline import model_config as model_config_stage
from edge_ocr.ocr.pipeline import patterns as pattern_stage
from edge_ocr.ocr.pipeline import prepare as prepare_stage
from edge_ocr.ocr.pipeline import rec as rec_stage
from edge_ocr.ocr.pipeline import retry as retry_stage
from edge_ocr.ocr.pipeline import spacing as spacing_stage
from edge_ocr.types import ModelRole, OcrResult, PrintProfile, TextLine

logger = logging.getLogger(__name__)

#: prints of separate dots: detection reads them with the dots joined (det.join_dots)
DOTTED_PRINTS = (PrintProfile.DOT_MATRIX, PrintProfile.INKJET)


@dataclass(frozen=True)
class PipelineOptions:
    image: prepare_stage.ImageOptions = field(default_factory=prepare_stage.ImageOptions)
    det: det_stage.DetOptions = field(default_factory=det_stage.DetOptions)
    rec: rec_stage.RecOptions = field(default_factory=rec_stage.RecOptions)
    cls: cls_stage.ClsOptions = field(default_factory=cls_stage.ClsOptions)
    spacing: spacing_stage.SpacingOptions = field(default_factory=spacing_stage.SpacingOptions)
    retry: retry_stage.RetryOptions = field(default_factory=retry_stage.RetryOptions)
    patterns: pattern_stage.PatternOptions = field(default_factory=pattern_stage.PatternOptions)
    calibration: calibration_stage.CalibrationOptions = field(
        default_factory=calibration_stage.CalibrationOptions
    )
    #: on `auto`, how dotted print the detector missed is found (only where `det.dot_join_per_px` is set)
    dots: dots_stage.DotOptions = field(default_factory=dots_stage.DotOptions)
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
        if family in ("ppocrv6-small", "ppocrv6-tiny"):
            return cls.rapidocr_3_10() if raw else cls.ppocrv6(model_config, family=family)
        raise ValueError(f"no pipeline settings for model family {family!r}")

    @classmethod
    def ppocrv6(
        cls, model_config: Mapping[str, Any] | None = None, *, family: str = "ppocrv6-small"
    ) -> PipelineOptions:
        """Our PP-OCRv6 pipeline: the model's own settings (its inference.yml: detector
        normalisation and thresholds, recognizer input shape) with our post-processing.

        The crop recognition reads is the kernel grown by the model's own unclip ratio (1.4); the
        box reported is grown by 1.2 as for PP-OCRv4, tighter than the crop, like hand-drawn ground
        truth. The detector's input keeps our limit (longer side at most 960), not the model's
        (shorter side at least 736): on ICDAR 2015 the model's found more boxes but read no more
        words. Post-processing, each piece measured with and without on the dev sets and generated
        labels (docs/BENCHMARKS.md, "PP-OCRv6: post-processing re-earned"): word-space recovery
        only where the space class saw a gap, label captions spaced, date patterns, no
        low-confidence retries, lines read below 0.8 dropped, calibration fitted per family."""
        config = model_config_stage.with_defaults(model_config)
        det, rec = config["det"], config["rec"]
        defaults = det_stage.DetOptions()
        return cls(
            det=replace(
                defaults,
                mean=tuple(det["mean"]),  # type: ignore[arg-type]
                std=tuple(det["std"]),  # type: ignore[arg-type]
                thresh=det["thresh"],
                box_thresh=det["box_thresh"],
                unclip_ratio=det["unclip_ratio"],
                outline_unclip_ratio=min(defaults.outline_unclip_ratio or 1.2, det["unclip_ratio"]),
                max_candidates=det["max_candidates"],
                # its detector misses about a sixth of dot-matrix lines whose dots do not touch
                # (200 generated dot-matrix labels, --print dot-matrix: 680 of 800 found, 800 joined);
                # on `auto` the dots are joined where the first detection leaves ink out (dots.py)
                dot_join_per_px=160.0,
            ),
            rec=rec_stage.RecOptions(
                image_height=rec["image_shape"][1],
                min_width=rec["image_shape"][2],
                max_width=rec["max_width"],
                # detected lines read below 0.8 are dropped (0.5 for PP-OCRv4 and RapidOCR): on the
                # scene set most of them are not text, and receipts and labels lose none they had right
                drop_score=0.8,
            ),
            # PP-OCRv6 reads most word spaces itself: a space is recovered only where its space class
            # was at least 0.01 likely in the gap (iiit5k, ICDAR 2015 and SROIE all read better)
            spacing=spacing_stage.SpacingOptions(min_space_prob=0.01),
            # no low-confidence retries (budget 0): on PP-OCRv6 they left the dev sets as they were and
            # lifted garbage boxes over the drop score on generated dot-matrix labels; a declared print
            # profile (--print) still reads its variants up front
            retry=retry_stage.RetryOptions(budget=0.0),
            patterns=pattern_stage.PatternOptions(space_after_captions=pattern_stage.SPACED_CAPTIONS),
            calibration=calibration_stage.CalibrationOptions.for_family(family),
        )

    @classmethod
    def rapidocr_3_10(cls) -> PipelineOptions:
        """Exactly what RapidOCR 3.10 does with its defaults (rapidocr/config.yaml), none of our
        post-processing: the reference for the PP-OCRv6 families (models/reference.py runs it)."""
        return cls(
            image=prepare_stage.ImageOptions(
                max_side_len=2000, min_side_len=30, pad_min_height=30, pad_width_height_ratio=8
            ),
            det=det_stage.DetOptions(
                limit_side_len=736,
                limit_type="min",
                mean=(0.5, 0.5, 0.5),
                std=(0.5, 0.5, 0.5),
                normalise_float64=True,
                thresh=0.3,
                box_thresh=0.5,
                unclip_ratio=1.6,
                outline_unclip_ratio=None,
                max_candidates=1000,
                use_dilation=True,
                point_order="x-sort",
                reading_order="rows",
            ),
            rec=rec_stage.RecOptions(
                image_height=48,
                min_width=320,
                max_width=None,
                batch_size=6,
                drop_score=0.5,
                sort_kind="quicksort",
                score_decimals=5,
                drop_blank=True,
            ),
            cls=cls_stage.ClsOptions(image_height=48, image_width=192, batch_size=6, thresh=0.9),
            use_cls=True,
            spacing=spacing_stage.SpacingOptions(enabled=False),
            retry=retry_stage.RetryOptions(enabled=False),
            patterns=pattern_stage.PatternOptions(enabled=False),
            calibration=calibration_stage.CalibrationOptions(enabled=False),
        )

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
        """`<family>/<engine>/<variant>`: what results record as their model."""
        files = self.engine.files
        return (
            files.set_id if files.set_id.startswith(f"{files.family}/") else f"{files.family}/{files.set_id}"
        )

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
        order = det_stage.sort_reading_order([d.quad for d in found], self.options.det.reading_order)
        return [found[i] for i in order]

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
            # decoded as each line's probabilities come (PP-OCRv6: up to 14 MB per wide line), so an
            # engine that runs lines one by one holds one line's, not the batch's
            for i, probs in zip(idx, session.run_each(batch), strict=True):
                dec = rec_stage.ctc_decode(probs, self._charset)[0]
                h, w = crops[i].shape[:2]
                ppf = rec_stage.frame_width_px(
                    w, h, batch.shape[3], probs.shape[1], self._rec_opts.image_height
                )
                results[i] = replace(dec, px_per_frame=ppf)
                if self._rec_opts.score_decimals is not None:
                    score = rec_stage.rounded_score(dec.char_confidences, self._rec_opts.score_decimals)
                    results[i] = replace(results[i], confidence=score)
                del probs
        return [r for r in results if r is not None]

    def _retry_weak_lines(
        self,
        decoded: list[rec_stage.Decoded],
        crops: list[np.ndarray],
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
        allowed = opts.budget_reads(len(crops))
        weak = [i for i, d in enumerate(best) if retry_stage.is_weak(d, opts)] if allowed else []
        if not weak:
            return best, best_crops, len(retried)
        jobs: list[tuple[int, str]] = []
        for name in opts.variants:  # variant-major: every weak line gets its best bet first
            for i in weak:
                if len(jobs) >= allowed:
                    break
                jobs.append((i, name))
        read(jobs)
        return best, best_crops, len(retried)

    def _find_missed_dots(
        self, image: np.ndarray, regions: list[det_stage.DetBox], timings: dict[str, float]
    ) -> tuple[list[det_stage.DetBox], bool]:
        """On `auto`: when the boxes found leave text-sized ink out (`dots.DetCheck.suspect`), detect
        again with the dots joined and keep that when it finds the lines missed. Returns the regions
        and whether the image was found to be dotted. Timings: `dots` for the checks, `det_joined`
        for the second detection when it ran."""
        opts = self.options.dots
        first = dots_stage.check_boxes(image, [r.quad for r in regions], opts)
        timings["dots"] = first.elapsed_ms
        if not first.suspect(opts):
            return regions, False
        t0 = time.perf_counter()
        joined = self.detect(det_stage.join_dots(image, self.options.det.dot_join_per_px))
        timings["det_joined"] = (time.perf_counter() - t0) * 1000
        second = dots_stage.check_boxes(image, [r.quad for r in joined], opts)
        timings["dots"] += second.elapsed_ms
        if dots_stage.prefer_joined(first, second, opts) and not dots_stage.runs_lines_together(
            [r.quad for r in regions], [r.quad for r in joined], opts
        ):
            logger.debug("dotted print found: %s, with dots joined %s", first, second)
            return joined, True
        return regions, False

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
        prepared = prepare_stage.within_bounds(image, self.options.image)
        if det:
            t0 = time.perf_counter()
            prepared = prepare_stage.pad_for_detection(prepared, self.options.image)
            declared = (
                self.options.retry.profile
                if print_profile is None
                else retry_stage.parse_print(print_profile)
            )
            dots = declared in DOTTED_PRINTS
            join = self.options.det.dot_join_per_px
            det_image = prepared.image
            if dots and join > 0:
                det_image = det_stage.join_dots(prepared.image, join)
            regions = self.detect(det_image)
            if declared in (None, PrintProfile.AUTO) and join > 0 and self.options.dots.enabled:
                regions, found_dots = self._find_missed_dots(prepared.image, regions, timings)
                if found_dots:  # read as a declared dot-matrix print from here on
                    print_profile = PrintProfile.DOT_MATRIX
            timings["det"] = (time.perf_counter() - t0) * 1000
            crops = [det_stage.crop_quad(prepared.image, r.quad) for r in regions]
            boxes = [prepared.to_source(r.outline) for r in regions]
        else:
            boxes = [np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=np.float32)]
            crops = [prepared.image]
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
            decoded, crops, retried = self._retry_weak_lines(decoded, crops, retry_opts)
            if retried:
                timings["retry"] = (time.perf_counter() - t0) * 1000
        self.engine.image_done()  # no more inference for this image (Lite frees its predictors)
        t0 = time.perf_counter()
        lines = []
        for box, dec, crop, own, own_crop in zip(boxes, decoded, crops, own_readings, own_crops):
            if det and dec.confidence < self._rec_opts.drop_score:
                continue
            if det and self._rec_opts.drop_blank and not dec.text.strip():
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
