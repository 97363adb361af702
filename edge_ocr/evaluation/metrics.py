"""Recognition and end-to-end metrics, as defined in shared/eval/README.md.

Recognition, per (ground truth, prediction) pair, texts compared after collapsing runs of whitespace
(and case-folding when case-insensitive):
- line accuracy: share of exact matches;
- 1 - NED: one minus the mean of edit distance / max(len(gt), len(pred)) (0 when both are empty);
- CER: total edit distance / total ground-truth characters, both with all whitespace removed.

End to end, per image, with micro-averaged counts over the set:
- predictions matching a don't-care (`###`) region (IoU > 0.5, or more than half of the prediction's
  area inside it) are dropped; don't-care regions are not counted as ground truth;
- detection: one-to-one greedy matching by descending IoU over pairs with IoU >= 0.5;
- end to end: the same greedy matching over pairs that also have equal text;
- words: the multiset of whitespace-separated words of the remaining predictions against that of the
  care regions (matched = size of the multiset intersection).
Precision or recall with a zero denominator is 0 (ICDAR convention).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from edge_ocr.evaluation.labels import GtRegion
from edge_ocr.evaluation.polygon import covered_fraction, iou

IOU_THRESHOLD = 0.5


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions, each costing 1)."""
    if a == b:
        return 0
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        cur = [i]
        for j, cb in enumerate(b, start=1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def normalize_text(text: str, case_insensitive: bool = False) -> str:
    """Collapse whitespace runs to one space and strip; case-fold when asked."""
    out = " ".join(text.split())
    return out.casefold() if case_insensitive else out


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


def _hmean(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


@dataclass(frozen=True)
class RecMetrics:
    n: int
    correct: int
    line_accuracy: float
    norm_edit_similarity: float  # 1 - normalized edit distance
    cer: float  # character error rate without spaces
    char_errors: int
    gt_chars: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_rec(samples: Sequence[tuple[str, str]], case_insensitive: bool = False) -> RecMetrics:
    """`samples` are (ground truth, prediction) pairs."""
    correct = 0
    ned_sum = 0.0
    errors = 0
    chars = 0
    for gt_raw, pred_raw in samples:
        gt, pred = normalize_text(gt_raw, case_insensitive), normalize_text(pred_raw, case_insensitive)
        correct += gt == pred
        longest = max(len(gt), len(pred))
        ned_sum += levenshtein(gt, pred) / longest if longest else 0.0
        gt_ns, pred_ns = gt.replace(" ", ""), pred.replace(" ", "")
        errors += levenshtein(gt_ns, pred_ns)
        chars += len(gt_ns)
    n = len(samples)
    return RecMetrics(
        n=n,
        correct=correct,
        line_accuracy=_ratio(correct, n),
        norm_edit_similarity=1.0 - ned_sum / n if n else 0.0,
        cer=_ratio(errors, chars) if chars else float(errors > 0),
        char_errors=errors,
        gt_chars=chars,
    )


class TextBox(Protocol):
    """Anything with `text` and `box` (a TextLine, or a GroundTruthLine)."""

    text: str
    box: Sequence[Sequence[float]]


Prediction = TextBox | tuple[str, Sequence[Sequence[float]]]


def _text_box(pred: Prediction) -> tuple[str, Sequence[Sequence[float]]]:
    if isinstance(pred, tuple):
        return pred[0], pred[1]
    return pred.text, pred.box


@dataclass(frozen=True)
class ImageCounts:
    """Counts for one image, summed over a set."""

    gt: int = 0  # care regions
    pred: int = 0  # predictions left after dropping those on don't-care regions
    det_matched: int = 0
    e2e_matched: int = 0
    gt_words: int = 0
    pred_words: int = 0
    word_matched: int = 0

    def __add__(self, other: ImageCounts) -> ImageCounts:
        a, b = asdict(self), asdict(other)
        return ImageCounts(**{k: a[k] + b[k] for k in a})


def _bbox(points: Sequence[Sequence[float]]) -> tuple[float, float, float, float]:
    xs = [float(p[0]) for p in points]
    ys = [float(p[1]) for p in points]
    return min(xs), min(ys), max(xs), max(ys)


def _boxes_overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _greedy(pairs: list[tuple[float, int, int]]) -> dict[int, int]:
    """One-to-one matching by descending IoU: {ground-truth index: prediction index}."""
    used_p: set[int] = set()
    matches: dict[int, int] = {}
    for _, g, p in sorted(pairs, key=lambda t: (-t[0], t[1], t[2])):
        if g not in matches and p not in used_p:
            matches[g] = p
            used_p.add(p)
    return matches


@dataclass(frozen=True)
class ImageMatch:
    """How one image's predictions met its ground truth (the pieces `count_image` counts)."""

    care: tuple[GtRegion, ...]  # ground-truth regions that count
    kept: tuple[tuple[str, Sequence[Sequence[float]]], ...]  # predictions not on don't-care regions
    gt_texts: tuple[str, ...]  # normalised
    pred_texts: tuple[str, ...]  # normalised
    det_pairs: tuple[tuple[float, int, int], ...]  # (IoU, gt index, kept index) with IoU >= 0.5
    det_matches: dict[int, int]  # gt index -> kept index
    e2e_matches: dict[int, int]  # gt index -> kept index, text equal too


def match_image(
    gt_regions: Sequence[GtRegion], predictions: Sequence[Prediction], case_insensitive: bool = False
) -> ImageMatch:
    preds = [_text_box(p) for p in predictions]
    care = [g for g in gt_regions if not g.ignore]
    dont_care = [g for g in gt_regions if g.ignore]
    kept = [
        (text, box)
        for text, box in preds
        if not any(
            iou(box, d.points) > IOU_THRESHOLD or covered_fraction(box, d.points) > 0.5 for d in dont_care
        )
    ]
    gt_texts = [normalize_text(g.text, case_insensitive) for g in care]
    pred_texts = [normalize_text(t, case_insensitive) for t, _ in kept]
    det_pairs: list[tuple[float, int, int]] = []
    gt_boxes = [_bbox(g.points) for g in care]
    pred_boxes = [_bbox(box) for _, box in kept]
    for gi, g in enumerate(care):
        for pi, (_, box) in enumerate(kept):
            if not _boxes_overlap(gt_boxes[gi], pred_boxes[pi]):
                continue  # IoU is 0
            v = iou(g.points, box)
            if v >= IOU_THRESHOLD:
                det_pairs.append((v, gi, pi))
    e2e_pairs = [t for t in det_pairs if gt_texts[t[1]] == pred_texts[t[2]]]
    return ImageMatch(
        care=tuple(care),
        kept=tuple(kept),
        gt_texts=tuple(gt_texts),
        pred_texts=tuple(pred_texts),
        det_pairs=tuple(det_pairs),
        det_matches=_greedy(det_pairs),
        e2e_matches=_greedy(e2e_pairs),
    )


def count_image(
    gt_regions: Sequence[GtRegion], predictions: Sequence[Prediction], case_insensitive: bool = False
) -> ImageCounts:
    m = match_image(gt_regions, predictions, case_insensitive)
    gt_words = Counter(w for t in m.gt_texts for w in t.split())
    pred_words = Counter(w for t in m.pred_texts for w in t.split())
    return ImageCounts(
        gt=len(m.care),
        pred=len(m.kept),
        det_matched=len(m.det_matches),
        e2e_matched=len(m.e2e_matches),
        gt_words=sum(gt_words.values()),
        pred_words=sum(pred_words.values()),
        word_matched=sum((gt_words & pred_words).values()),
    )


@dataclass(frozen=True)
class E2EMetrics:
    n_images: int
    det_precision: float
    det_recall: float
    det_hmean: float
    e2e_precision: float
    e2e_recall: float
    e2e_hmean: float
    word_precision: float
    word_recall: float
    word_f: float
    counts: ImageCounts

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_counts(cls, n_images: int, c: ImageCounts) -> E2EMetrics:
        dp, dr = _ratio(c.det_matched, c.pred), _ratio(c.det_matched, c.gt)
        ep, er = _ratio(c.e2e_matched, c.pred), _ratio(c.e2e_matched, c.gt)
        wp, wr = _ratio(c.word_matched, c.pred_words), _ratio(c.word_matched, c.gt_words)
        return cls(
            n_images=n_images,
            det_precision=dp,
            det_recall=dr,
            det_hmean=_hmean(dp, dr),
            e2e_precision=ep,
            e2e_recall=er,
            e2e_hmean=_hmean(ep, er),
            word_precision=wp,
            word_recall=wr,
            word_f=_hmean(wp, wr),
            counts=c,
        )


def evaluate_e2e(
    per_image: Sequence[tuple[Sequence[GtRegion], Sequence[Prediction]]], case_insensitive: bool = False
) -> E2EMetrics:
    """`per_image` holds (ground-truth regions, predictions) per image; a prediction is anything with
    `text` and `box` (e.g. a TextLine) or a (text, box) tuple."""
    total = ImageCounts()
    for gts, preds in per_image:
        total = total + count_image(gts, preds, case_insensitive)
    return E2EMetrics.from_counts(len(per_image), total)
