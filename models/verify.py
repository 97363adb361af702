"""Accuracy check of a built model set against the reference and the ground truth.

The check set is fixed: synthetic labels from ``edge_ocr.synth.check_set(seed, count)`` with
exact ground truth. Each set is run end to end through ``edge_ocr.ocr.reader.pipeline_from_files``
and compared with the reference (paddleocr 2.10 on the carrier's Paddle models), whose output
is cached per check set in ``<models_dir>/check/``.

Metrics (all in [0, 1]):

``ref_line_agreement``
    lines whose text equals the reference line at the same place, over max(#ref, #set) lines.
``ref_char_accuracy`` / ``gt_char_accuracy``
    1 - edit distance / characters, over reference / ground-truth lines (a line the set
    missed counts as all wrong).
``gt_line_accuracy``
    ground-truth lines read exactly; ``gt_line_accuracy_nospace`` the same after NFKC and
    without whitespace (PP-OCRv4 often drops the spaces of narrow-spaced fonts; the reference
    does too).
``det_box_f1`` / ``det_box_iou``
    boxes matched to the reference's at IoU >= 0.5 (F1), and their mean IoU.

Rules: a float set must agree with the reference on >= 98% of lines (a converted one must also
be the same model on the same tensors: ``models/agreement.py``); an int16/int8 set's
``gt_line_accuracy_nospace`` must be within 2 points of its float set's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

CHECK_DIR = "check"
FLOAT_MIN_REF_AGREEMENT = 0.98
QUANT_MIN_REF_CHARS = 0.95
QUANT_MAX_DROP = 0.02
BOX_IOU = 0.5


@dataclass(frozen=True)
class CheckSpec:
    seed: int = 1234
    count: int = 24

    def as_dict(self) -> dict[str, Any]:
        return {"generator": "edge_ocr.synth.check_set", **asdict(self)}

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Line:
    text: str
    box: tuple[float, float, float, float]  # axis-aligned x0, y0, x1, y1


def aabb(points: Any) -> tuple[float, float, float, float]:
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return (float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max()))


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match(a: Sequence[Line], b: Sequence[Line], thresh: float = BOX_IOU) -> list[tuple[int, int, float]]:
    """Greedy one-to-one matching of boxes by IoU (highest first)."""
    pairs = sorted(
        ((iou(x.box, y.box), i, j) for i, x in enumerate(a) for j, y in enumerate(b)), reverse=True
    )
    used_a: set[int] = set()
    used_b: set[int] = set()
    out = []
    for v, i, j in pairs:
        if v < thresh:
            break
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        out.append((i, j, v))
    return out


def levenshtein(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def nospace(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).split())


@dataclass
class _Tally:
    lines_equal: int = 0
    lines_total: int = 0
    edits: int = 0
    chars: int = 0
    nospace_equal: int = 0

    def add(self, truth: Sequence[Line], pred: Sequence[Line], denominator: int) -> None:
        matched = {i: j for i, j, _ in match(truth, pred)}
        self.lines_total += denominator
        for i, t in enumerate(truth):
            p = pred[matched[i]].text if i in matched else ""
            self.lines_equal += int(i in matched and p == t.text)
            self.nospace_equal += int(i in matched and nospace(p) == nospace(t.text))
            self.edits += min(len(t.text), levenshtein(p, t.text)) if p else len(t.text)
            self.chars += len(t.text)


def compare(truth: list[list[Line]], refs: list[list[Line]], preds: list[list[Line]]) -> dict[str, Any]:
    """Metrics of one set's lines against the ground truth and the reference, per image lists."""
    gt, ref = _Tally(), _Tally()
    box_matched = box_ref = box_pred = 0
    ious: list[float] = []
    for g, r, p in zip(truth, refs, preds):
        gt.add(g, p, len(g))
        ref.add(r, p, max(len(r), len(p)))
        m = match(r, p)
        box_matched += len(m)
        box_ref += len(r)
        box_pred += len(p)
        ious.extend(v for _, _, v in m)
    prec = box_matched / box_pred if box_pred else 1.0
    rec = box_matched / box_ref if box_ref else 1.0

    def ratio(a: int, b: int) -> float:
        return round(a / b, 4) if b else 1.0

    return {
        "ref_line_agreement": ratio(ref.lines_equal, ref.lines_total),
        "ref_char_accuracy": round(1 - ref.edits / ref.chars, 4) if ref.chars else 1.0,
        "gt_line_accuracy": ratio(gt.lines_equal, gt.lines_total),
        "gt_line_accuracy_nospace": ratio(gt.nospace_equal, gt.lines_total),
        "gt_char_accuracy": round(1 - gt.edits / gt.chars, 4) if gt.chars else 1.0,
        "det_box_f1": round(2 * prec * rec / (prec + rec), 4) if prec + rec else 0.0,
        "det_box_iou": round(float(np.mean(ious)), 4) if ious else 0.0,
        "lines": {"ground_truth": sum(map(len, truth)), "reference": box_ref, "set": box_pred},
    }


# --- the check set and the reference ---------------------------------------------------------


def check_images(spec: CheckSpec) -> tuple[list[np.ndarray], list[list[Line]]]:
    from edge_ocr.synth import check_set

    labels = check_set(seed=spec.seed, count=spec.count)
    images = [label.image for label in labels]
    truth = [[Line(gl.text, aabb(gl.box)) for gl in label.lines] for label in labels]
    return images, truth


def reference_lines(
    models_dir: Path,
    spec: CheckSpec,
    images: list[np.ndarray],
    reference_id: str,
    reference: str = "paddleocr-2.10",
    files: Any = None,
) -> list[list[Line]]:
    """The reference's lines on the check set, cached in `<models_dir>/check/` under a hash of the
    images themselves (a change to the label generator invalidates the cache). `reference` names
    the pipeline (PaddleOCR 2.10 on the carrier's Paddle models, or RapidOCR 3.10 on `files`,
    the family's ONNX set)."""
    name = "reference" if reference == "paddleocr-2.10" else f"reference-{reference}-{reference_id}"
    cache = models_dir / CHECK_DIR / f"{name}-{spec.key}.json"
    pixels = hashlib.sha256(b"".join(np.ascontiguousarray(img).tobytes() for img in images)).hexdigest()
    if cache.is_file():
        try:
            data = json.loads(cache.read_text(encoding="utf-8"))
            if (
                data.get("reference") == reference_id
                and data.get("pixels") == pixels
                and len(data["images"]) == len(images)
            ):
                return [[Line(t, tuple(b)) for t, b in img] for img in data["images"]]  # type: ignore[misc]
        except (OSError, ValueError, KeyError, TypeError):
            logger.warning("ignoring unreadable reference cache %s", cache)
    t0 = time.perf_counter()
    if reference == "paddleocr-2.10":
        from edge_ocr_models.reference import reference_ocr

        pages = reference_ocr(images)
    else:
        from edge_ocr_models.reference import rapidocr_reference

        pages = rapidocr_reference(images, files)
    out = [[Line(text, aabb(quad)) for text, _score, quad in page] for page in pages]
    logger.info("reference ran on %d check images in %.1f s", len(images), time.perf_counter() - t0)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.name + ".tmp")
    tmp.write_text(
        json.dumps(
            {
                "reference": reference_id,
                "pixels": pixels,
                "spec": spec.as_dict(),
                "images": [[[ln.text, list(ln.box)] for ln in img] for img in out],
            },
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    os.replace(tmp, cache)
    return out


def run_set(
    files: Any, images: list[np.ndarray], threads: int | None = None
) -> tuple[list[list[Line]], float]:
    """Run one model set end to end; returns its lines per image and the mean warm ms per image."""
    from edge_ocr.ocr.pipeline.runner import PipelineOptions
    from edge_ocr.ocr.reader import pipeline_from_files

    # the engines are checked against the reference on what the models read, before our own
    # post-processing (word spaces, retries), which the reference does not have
    options = PipelineOptions.for_family(files.family, files.model_config, raw=True)
    pipe = pipeline_from_files(files, threads=threads, options=options)
    out = []
    try:
        if images:
            pipe.run(images[0], det=True)  # load the sessions outside the timing
        t0 = time.perf_counter()
        for img in images:
            res = pipe.run(img, det=True)
            out.append([Line(ln.text, aabb(ln.box)) for ln in res.lines])
    finally:
        pipe.close()
    return out, (time.perf_counter() - t0) * 1000 / max(1, len(images))


def judge(
    set_id: str,
    variant: str,
    metrics: dict[str, Any],
    baseline: dict[str, Any] | None,
    *,
    float_min_agreement: float = FLOAT_MIN_REF_AGREEMENT,
    reference_name: str = "the reference",
) -> tuple[bool, str]:
    """Whether a set passes its accuracy rule, and why not.

    A quantized set is compared with its float set's ground-truth line accuracy and, as a guard
    for when that float set itself fails, with the reference's; it must also agree with the
    reference on at least QUANT_MIN_REF_CHARS of characters. Clean generated labels alone let
    an INT8 ONNX set through that lost 9 points on IIIT 5K scene words (docs/BENCHMARKS.md):
    character agreement with the reference is what showed it.

    Sets converted from a family's ONNX files are judged against the ONNX Runtime fp32 set's
    reading (`reference_name`). A float one must also be the same model: its networks' outputs on
    the reference's own tensors within float tolerance, and every line it decodes differently
    explained by a near-tie (`metrics["agreement"]`, from `edge_ocr_models.agreement`); identical text is
    not demanded, since another CPU's rounding turns such ties over (issue 21).
    """
    if variant == "fp32":
        same = metrics.get("agreement")
        if same is not None and not same.get("same_model"):
            return False, same.get("why") or f"{set_id} is not the same model as {reference_name}"
        got = metrics["ref_line_agreement"]
        if got >= float_min_agreement:
            return True, ""
        return False, (
            f"{set_id} agrees with {reference_name} on {got:.1%} of lines, "
            f"below the {float_min_agreement:.0%} required of float models"
        )
    if baseline is None:
        return False, f"{set_id} has no checked float set to compare with; build its fp32 set too"
    chars = metrics.get("ref_char_accuracy")
    if chars is not None and chars < QUANT_MIN_REF_CHARS:
        return False, (
            f"{set_id} agrees with {reference_name} on {chars:.1%} of characters, below the "
            f"{QUANT_MIN_REF_CHARS:.0%} required of quantized models"
        )
    key = "gt_line_accuracy_nospace"
    got = metrics[key]
    for name, base in (("its float set", baseline[key]), (reference_name, metrics.get(f"reference_{key}"))):
        if base is not None and got < base - QUANT_MAX_DROP:
            return False, (
                f"{set_id} reads {got:.1%} of ground-truth lines, more than {QUANT_MAX_DROP * 100:.0f} points "
                f"below {name} ({base:.1%})"
            )
    return True, ""
