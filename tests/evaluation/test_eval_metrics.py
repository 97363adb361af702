"""Metrics on small hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from edge_ocr.evaluation import GtRegion, evaluate_e2e, evaluate_rec, iou, levenshtein, normalize_text
from edge_ocr.evaluation.polygon import _self_intersecting, iou_cv2
from edge_ocr.types import TextLine


def sq(x0: float, y0: float, x1: float, y1: float):
    return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))


@pytest.mark.parametrize(
    ("a", "b", "d"),
    [("", "", 0), ("abc", "", 3), ("", "ab", 2), ("kitten", "sitting", 3), ("flaw", "lawn", 2),
     ("LOT A23B", "LOT A23B", 0), ("生产日期", "生日期", 1), ("0O", "O0", 2)],
)  # fmt: skip
def test_levenshtein(a, b, d):
    assert levenshtein(a, b) == d
    assert levenshtein(b, a) == d


def test_normalize_text():
    assert normalize_text("  LOT \t A1  ") == "LOT A1"
    assert normalize_text("Straße", case_insensitive=True) == "strasse"


def test_rec_metrics_hand_computed():
    samples = [("LOT A1", "LOT  A1"), ("ABC", "ABD"), ("Hello  World", "hello world")]
    m = evaluate_rec(samples, case_insensitive=False)
    assert m.n == 3 and m.correct == 1
    assert m.line_accuracy == pytest.approx(1 / 3)
    assert m.norm_edit_similarity == pytest.approx(1 - (0 + 1 / 3 + 2 / 11) / 3)  # H/h and W/w
    assert (m.char_errors, m.gt_chars) == (3, 18)
    assert m.cer == pytest.approx(3 / 18)
    ci = evaluate_rec(samples, case_insensitive=True)
    assert ci.line_accuracy == pytest.approx(2 / 3)
    assert ci.norm_edit_similarity == pytest.approx(1 - (1 / 3) / 3)
    assert ci.cer == pytest.approx(1 / 18)
    assert set(m.to_dict()) >= {"line_accuracy", "norm_edit_similarity", "cer"}


def test_rec_cer_ignores_spaces_and_empty_cases():
    m = evaluate_rec([("AB CD", "ABCD"), ("", "")])
    assert m.cer == 0.0 and m.correct == 1
    assert m.norm_edit_similarity == pytest.approx(1 - (1 / 5) / 2)
    assert evaluate_rec([]).line_accuracy == 0.0


def test_e2e_hand_computed_with_dont_care():
    gts = [
        GtRegion("LOT", sq(0, 0, 10, 10)),
        GtRegion("EXP 2027", sq(0, 20, 10, 30)),
        GtRegion("###", sq(20, 0, 30, 10)),
    ]
    preds = [
        TextLine("LOT", 0.9, sq(0, 0, 10, 10)),  # right box, right text
        TextLine("EXP 2028", 0.9, sq(0, 21, 10, 31)),  # IoU 9/11, wrong text
        TextLine("zz", 0.9, sq(21, 1, 29, 9)),  # inside the don't-care region: dropped
        ("junk", sq(50, 50, 60, 60)),  # false positive, given as a (text, box) tuple
    ]
    m = evaluate_e2e([(gts, preds)])
    c = m.counts
    assert (c.gt, c.pred, c.det_matched, c.e2e_matched) == (2, 3, 2, 1)
    assert (m.det_precision, m.det_recall, m.det_hmean) == pytest.approx((2 / 3, 1.0, 0.8))
    assert (m.e2e_precision, m.e2e_recall, m.e2e_hmean) == pytest.approx((1 / 3, 0.5, 0.4))
    assert (c.gt_words, c.pred_words, c.word_matched) == (3, 4, 2)
    assert (m.word_precision, m.word_recall, m.word_f) == pytest.approx((0.5, 2 / 3, 4 / 7))
    assert m.to_dict()["counts"]["det_matched"] == 2


def test_dont_care_drops_a_prediction_mostly_inside_it():
    gts = [GtRegion("###", sq(0, 0, 100, 20))]
    m = evaluate_e2e([(gts, [("x", sq(10, 5, 20, 15)), ("y", sq(90, 0, 130, 20))])])
    # the first is inside (IoU only 0.05), the second only a quarter inside: kept as a false positive
    assert (m.counts.gt, m.counts.pred) == (0, 1)
    assert m.det_precision == 0.0 and m.det_recall == 0.0


def test_matching_is_one_to_one_and_greedy_by_iou():
    gts = [GtRegion("A", sq(0, 0, 10, 10)), GtRegion("B", sq(8, 0, 18, 10))]
    preds = [("A", sq(0, 0, 10, 10)), ("A", sq(1, 0, 11, 10)), ("B", sq(8, 0, 18, 10))]
    m = evaluate_e2e([(gts, preds)])
    assert m.counts.det_matched == 2  # the duplicate of A stays unmatched
    assert m.det_precision == pytest.approx(2 / 3) and m.det_recall == 1.0
    assert m.counts.e2e_matched == 2


def test_e2e_case_and_whitespace():
    gts = [GtRegion("Best  Before", sq(0, 0, 50, 10))]
    preds = [("BEST BEFORE", sq(0, 0, 50, 10))]
    assert evaluate_e2e([(gts, preds)]).e2e_hmean == 0.0
    m = evaluate_e2e([(gts, preds)], case_insensitive=True)
    assert m.e2e_hmean == 1.0 and m.word_f == 1.0


def test_word_metric_does_not_punish_line_level_output():
    gts = [GtRegion("LOT", sq(0, 0, 30, 10)), GtRegion("A23B0417", sq(35, 0, 100, 10))]
    m = evaluate_e2e([(gts, [("LOT A23B0417", sq(0, 0, 100, 10))])])
    assert m.word_f == 1.0 and m.e2e_hmean == 0.0


def test_iou_hand_cases_on_both_backends():
    for fn in (iou, iou_cv2):
        assert fn(sq(0, 0, 10, 10), sq(5, 0, 15, 10)) == pytest.approx(1 / 3)
        assert fn(sq(0, 0, 10, 10), sq(20, 20, 30, 30)) == 0.0
        assert fn(sq(0, 0, 10, 10), ((0, 0), (10, 0), (10, 10), (0, 10))) == pytest.approx(1.0)
        # non-convex (arrow-head) quad inside the square: area 50 - notch 25 = 25
        dart = ((0, 0), (10, 5), (0, 10), (5, 5))
        assert fn(dart, sq(0, 0, 10, 10)) == pytest.approx(25 / 100)
        assert fn(sq(0, 0, 10, 10), ((0, 0), (0, 0), (0, 0), (0, 0))) == 0.0


def test_iou_backends_agree_on_random_quads():
    rng = np.random.default_rng(0)
    checked = 0
    while checked < 200:
        a, b = rng.uniform(0, 50, (4, 2)), rng.uniform(0, 50, (4, 2))
        if _self_intersecting(a) or _self_intersecting(b):
            continue
        assert iou(a, b) == pytest.approx(iou_cv2(a, b), abs=1e-5)
        checked += 1
