"""Accuracy metrics and the activation rules."""

from __future__ import annotations

from edge_ocr_models.verify import Line, compare, judge, levenshtein, match, nospace


def _l(text: str, x: float, y: float = 0.0) -> Line:
    return Line(text, (x, y, x + 100.0, y + 20.0))


def test_levenshtein_and_nospace() -> None:
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3
    assert nospace("LOT: A1\u3000B") == "LOT:A1B"
    assert nospace("（17）") == "(17)"


def test_match_is_one_to_one_by_iou() -> None:
    a = [_l("x", 0), _l("y", 200)]
    b = [_l("y", 205), _l("x", 3), _l("z", 1000)]
    assert sorted((i, j) for i, j, _ in match(a, b)) == [(0, 1), (1, 0)]


def test_compare_counts_lines_chars_and_boxes() -> None:
    truth = [[_l("LOT A1", 0), _l("EXP 2027", 0, 50)]]
    ref = [[_l("LOTA1", 0), _l("EXP 2027", 0, 50)]]
    same = compare(truth, ref, ref)
    assert same["ref_line_agreement"] == 1.0 and same["det_box_f1"] == 1.0
    assert same["gt_line_accuracy"] == 0.5 and same["gt_line_accuracy_nospace"] == 1.0
    missing = compare(truth, ref, [[_l("LOTA1", 0)]])
    assert missing["ref_line_agreement"] == 0.5
    assert missing["gt_char_accuracy"] < 0.5
    assert round(missing["det_box_f1"], 3) == round(2 * 1.0 * 0.5 / 1.5, 3)


def test_judge_rules() -> None:
    ok, _ = judge("onnx/fp32", "fp32", {"ref_line_agreement": 0.99}, None)
    assert ok
    ok, why = judge("lite/fp32", "fp32", {"ref_line_agreement": 0.9}, None)
    assert not ok and "90.0%" in why
    base = {"gt_line_accuracy_nospace": 0.80}
    ok, _ = judge("lite/int8", "int8", {"gt_line_accuracy_nospace": 0.785}, base)
    assert ok
    ok, why = judge("lite/int8", "int8", {"gt_line_accuracy_nospace": 0.77}, base)
    assert not ok and "float set" in why
    ok, why = judge("lite/int8", "int8", {"gt_line_accuracy_nospace": 0.9}, None)
    assert not ok and "float set" in why
    ok, why = judge(
        "lite/int8",
        "int8",
        {"gt_line_accuracy_nospace": 0.70, "reference_gt_line_accuracy_nospace": 0.8},
        {"gt_line_accuracy_nospace": 0.70},
    )
    assert not ok and "reference" in why
