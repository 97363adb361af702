"""Where end-to-end points go: every ground-truth line of an end-to-end set, classified.

    python -m studies.e2e_errors ../shared/eval/sroie --engine onnx [--save p.jsonl]
    python -m studies.e2e_errors ../shared/eval/sroie --load p.jsonl   # no OCR run

Matching is `edge_ocr.evaluation.match_image` (the one `edge-ocr eval` counts with). Each care
region ends in one class:

- ``right``: end-to-end match (box IoU >= 0.5 and the same text);
- matched box, wrong text: ``text_space`` (equal without spaces), ``text_punct`` (equal on letters
  and digits only), ``text_edge_missing`` / ``text_edge_extra`` (the reading lacks, or has in
  excess, characters only at the start or end: a cut or overgrown box), ``text_other``;
- no box at IoU >= 0.5: ``iou_near`` (best IoU in [0.4, 0.5)), ``split`` (two or more predictions lie
  mostly inside it), ``merged`` (its best-overlapping prediction also covers another region),
  ``missed`` (no prediction overlaps it), ``geometry_other``.

Predictions that match nothing are counted as ``fp_split_part``, ``fp_merged``,
``fp_on_matched`` (overlapping a region matched by another prediction) or ``fp_spurious``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from edge_ocr.evaluation.labels import DetSample, read_det_labels
from edge_ocr.evaluation.metrics import ImageMatch, Prediction, match_image
from edge_ocr.evaluation.polygon import covered_fraction, iou
from edge_ocr.evaluation.runner import default_case_insensitive, read_image, resolve_label_file
from edge_ocr.ocr.pipeline.det import DetOptions
from edge_ocr.ocr.pipeline.runner import OcrPipeline, PipelineOptions

GT_CLASSES = (
    "right",
    "text_space",
    "text_punct",
    "text_edge_missing",
    "text_edge_extra",
    "text_other",
    "iou_near",
    "split",
    "merged",
    "missed",
    "geometry_other",
)
FP_CLASSES = ("fp_split_part", "fp_merged", "fp_on_matched", "fp_spurious")
NEAR_IOU = 0.4
#: a prediction "lies inside" a region when more than this share of its area does
INSIDE = 0.5


def text_error_class(gt: str, pred: str) -> str:
    """How a reading differs from the truth (both already normalised)."""
    if gt.replace(" ", "") == pred.replace(" ", ""):
        return "text_space"
    a, b = "".join(c for c in gt if c.isalnum()), "".join(c for c in pred if c.isalnum())
    if a == b:
        return "text_punct"
    g, p = gt.replace(" ", ""), pred.replace(" ", "")
    if len(p) < len(g) and p and p in g and (g.startswith(p) or g.endswith(p) or _inner(g, p)):
        return "text_edge_missing"
    if len(g) < len(p) and g and g in p and (p.startswith(g) or p.endswith(g) or _inner(p, g)):
        return "text_edge_extra"
    return "text_other"


def _inner(longer: str, shorter: str) -> bool:
    """`shorter` is `longer` less a few characters at both ends (at most 2 in all)."""
    return len(longer) - len(shorter) <= 2 and longer[1:-1] == shorter if len(longer) > 2 else False


@dataclass
class Breakdown:
    gt: Counter = field(default_factory=Counter)
    fp: Counter = field(default_factory=Counter)
    examples: dict[str, list[tuple[str, str, str]]] = field(
        default_factory=dict
    )  # class -> (image, gt, pred)
    n_pred: int = 0

    def add_example(self, cls: str, image: str, gt: str, pred: str, keep: int) -> None:
        rows = self.examples.setdefault(cls, [])
        if len(rows) < keep:
            rows.append((image, gt, pred))

    @property
    def n_gt(self) -> int:
        return sum(self.gt.values())

    def e2e_hmean(self, fixed: Iterable[str] = ()) -> float:
        """End-to-end H-mean, or what it would be if every region of the `fixed` classes were right
        (with the predictions count unchanged: an upper bound's sketch, not a promise)."""
        right = self.gt["right"] + sum(self.gt[c] for c in fixed)
        p = right / self.n_pred if self.n_pred else 0.0
        r = right / self.n_gt if self.n_gt else 0.0
        return 2 * p * r / (p + r) if p + r else 0.0

    def to_dict(self) -> dict:
        return {
            "n_gt": self.n_gt,
            "n_pred": self.n_pred,
            "e2e_hmean": round(self.e2e_hmean(), 4),
            "gt": {c: self.gt[c] for c in GT_CLASSES},
            "fp": {c: self.fp[c] for c in FP_CLASSES},
            "hmean_if_fixed": {c: round(self.e2e_hmean([c]), 4) for c in GT_CLASSES if c != "right"},
        }


def classify_image(m: ImageMatch) -> tuple[list[tuple[int, str, int | None]], list[tuple[int, str]]]:
    """([(gt index, class, prediction index or None)], [(unmatched prediction index, class)])."""
    n_gt, n_pred = len(m.care), len(m.kept)
    overlap = [[0.0] * n_pred for _ in range(n_gt)]  # share of prediction p's area inside region g
    ious = [[0.0] * n_pred for _ in range(n_gt)]
    for g, region in enumerate(m.care):
        for p, (_, box) in enumerate(m.kept):
            ious[g][p] = iou(region.points, box)
            if ious[g][p] > 0:
                overlap[g][p] = covered_fraction(box, region.points)
    matched_pred = set(m.det_matches.values())
    gt_rows: list[tuple[int, str, int | None]] = []
    split_parts: set[int] = set()
    merged_preds: set[int] = set()
    for g in range(n_gt):
        if g in m.e2e_matches:
            gt_rows.append((g, "right", m.e2e_matches[g]))
            continue
        if g in m.det_matches:
            p = m.det_matches[g]
            gt_rows.append((g, text_error_class(m.gt_texts[g], m.pred_texts[p]), p))
            continue
        best = max(range(n_pred), key=lambda p: ious[g][p], default=None)
        best_iou = ious[g][best] if best is not None else 0.0
        inside = [p for p in range(n_pred) if overlap[g][p] > INSIDE]
        if best is None or best_iou <= 0:
            gt_rows.append((g, "missed", None))
        elif len(inside) >= 2:
            split_parts.update(inside)
            gt_rows.append((g, "split", best))
        elif any(overlap[h][best] > 0.1 and h != g for h in range(n_gt)) and overlap[g][best] < 0.9:
            merged_preds.add(best)
            gt_rows.append((g, "merged", best))
        elif best_iou >= NEAR_IOU:
            gt_rows.append((g, "iou_near", best))
        else:
            gt_rows.append((g, "geometry_other", best))
    fp_rows: list[tuple[int, str]] = []
    for p in range(n_pred):
        if p in matched_pred:
            continue
        if p in split_parts:
            fp_rows.append((p, "fp_split_part"))
        elif p in merged_preds:
            fp_rows.append((p, "fp_merged"))
        elif any(ious[g][p] > 0 for g in range(n_gt)):
            fp_rows.append((p, "fp_on_matched"))
        else:
            fp_rows.append((p, "fp_spurious"))
    return gt_rows, fp_rows


def analyse(
    samples: Sequence[DetSample],
    predictions: Sequence[Sequence[Prediction]],
    case_insensitive: bool,
    examples: int = 8,
) -> Breakdown:
    out = Breakdown()
    for sample, preds in zip(samples, predictions, strict=True):
        m = match_image(sample.regions, preds, case_insensitive)
        out.n_pred += len(m.kept)
        gt_rows, fp_rows = classify_image(m)
        for g, cls, p in gt_rows:
            out.gt[cls] += 1
            if cls != "right":
                out.add_example(
                    cls, sample.path.name, m.gt_texts[g], m.pred_texts[p] if p is not None else "", examples
                )
        for p, cls in fp_rows:
            out.fp[cls] += 1
            out.add_example(cls, sample.path.name, "", m.pred_texts[p], examples)
    return out


def run_predictions(samples: Sequence[DetSample], pipe) -> list[list[tuple[str, list]]]:
    out = []
    for i, s in enumerate(samples, start=1):
        result = pipe.run(read_image(s.path), det=True)
        out.append([(line.text, [list(p) for p in line.box]) for line in result.lines])
        print(f"\r{i}/{len(samples)}", end="", file=sys.stderr)
    print(file=sys.stderr)
    return out


def det_grid(
    samples: Sequence[DetSample], pipe: OcrPipeline, grid: Sequence[DetOptions], case_insensitive: bool
) -> list[dict]:
    """Detection H-mean and geometry classes for each DetOptions in `grid`, from one run of the
    detection model per image (text is not read: the text classes count as matched boxes)."""
    from edge_ocr.ocr.pipeline import det as det_stage
    from edge_ocr.types import ModelRole

    maps = []
    for s in samples:
        det_in = det_stage.preprocess(read_image(s.path), pipe.options.det)
        maps.append((det_in, pipe.engine.session(ModelRole.DET).run(det_in.tensor)))
    rows = []
    for opts in grid:
        preds = []
        for det_in, prob in maps:
            found = det_stage.postprocess(prob, det_in, opts)
            preds.append([("", d.outline.tolist()) for d in found])
        report = analyse(samples, preds, case_insensitive, 0)
        matched = sum(v for k, v in report.gt.items() if k == "right" or k.startswith("text_"))
        p = matched / report.n_pred if report.n_pred else 0.0
        r = matched / report.n_gt if report.n_gt else 0.0
        geometry = {c: report.gt[c] for c in GT_CLASSES[6:]}
        rows.append({"options": opts, "det_hmean": 2 * p * r / (p + r) if p + r else 0.0, **geometry})
    return rows


def _options(args: argparse.Namespace):
    base = PipelineOptions.reference() if args.raw else PipelineOptions()
    if args.retry_budget is not None:
        base = replace(
            base, retry=replace(base.retry, budget=args.retry_budget, enabled=args.retry_budget > 0)
        )
    return base


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("path", type=Path, help="an end-to-end label folder or det_gt.txt")
    ap.add_argument("--engine", default="onnx")
    ap.add_argument("--model-variant", default="fp32")
    ap.add_argument("--raw", action="store_true", help="the reference pipeline's reading")
    ap.add_argument("--retry-budget", type=float, default=None, metavar="N")
    ap.add_argument("--save", type=Path, help="write the predictions (JSON lines) here")
    ap.add_argument("--load", type=Path, help="analyse saved predictions instead of running OCR")
    ap.add_argument("--examples", type=int, default=6, help="examples printed per class")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    label_file, kind = resolve_label_file(args.path)
    if kind != "e2e":
        ap.error(f"{label_file} is not an end-to-end set")
    samples = read_det_labels(label_file)
    if args.load:
        rows = [json.loads(line) for line in args.load.read_text().splitlines() if line.strip()]
        by_name = {r["image"]: [(t, b) for t, b in r["lines"]] for r in rows}
        predictions = [by_name[s.path.name] for s in samples]
    else:
        from edge_ocr.ocr.reader import open_pipeline

        with open_pipeline(args.engine, args.model_variant, options=_options(args)) as pipe:
            predictions = run_predictions(samples, pipe)
    if args.save:
        args.save.write_text(
            "".join(
                json.dumps({"image": s.path.name, "lines": p}, ensure_ascii=False) + "\n"
                for s, p in zip(samples, predictions)
            )
        )
    report = analyse(samples, predictions, default_case_insensitive(label_file), args.examples)
    if args.json:
        print(json.dumps(report.to_dict()))
        return 0
    d = report.to_dict()
    print(f"{label_file}: {d['n_gt']} regions, {d['n_pred']} predictions, e2e H-mean {d['e2e_hmean']:.4f}")
    print("| class | regions | share | e2e H-mean if all right |")
    print("|---|---|---|---|")
    for c in GT_CLASSES:
        fixed = "" if c == "right" else f"{d['hmean_if_fixed'][c]:.4f}"
        print(f"| {c} | {d['gt'][c]} | {d['gt'][c] / max(d['n_gt'], 1):.3f} | {fixed} |")
    print("| unmatched predictions | | | |")
    for c in FP_CLASSES:
        print(f"| {c} | {d['fp'][c]} | {d['fp'][c] / max(d['n_pred'], 1):.3f} | |")
    for c in (*GT_CLASSES[1:], *FP_CLASSES):
        for image, gt, pred in report.examples.get(c, []):
            print(f"{c:18s} {image}: gt={gt!r} pred={pred!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
