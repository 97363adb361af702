"""Label rules: confusables, dates, GS1 check digits, expected values, verdicts. Pure functions."""

from __future__ import annotations

from datetime import date

import pytest

from edge_ocr.config import ChecksSpec, FieldSpec, FieldType, RecipeConfig
from edge_ocr.rules.confusables import correct_digits, correct_to_mask, matches_mask
from edge_ocr.rules.dates import parse_label_date
from edge_ocr.rules.verdict import VerdictStatus, evaluate, gs1_check_digit, gs1_valid, read_field
from edge_ocr.types import OcrResult, TextLine

TODAY = date(2026, 3, 10)


def result(*texts: str, size: tuple[int, int] = (400, 400)) -> OcrResult:
    lines = tuple(
        TextLine(
            t,
            0.95,
            ((10.0, 40.0 * i + 10), (300.0, 40.0 * i + 10), (300.0, 40.0 * i + 40), (10.0, 40.0 * i + 40)),
        )
        for i, t in enumerate(texts)
    )
    return OcrResult(lines, size, "fake", "fake/none")


RECIPE = RecipeConfig(
    name="capsules",
    fields=(
        FieldSpec("batch", regex=r"BATCH[: ]*(\w+)", format="A99A9999"),
        FieldSpec("expiry", regex=r"EXP[: ]*(\S+)", type=FieldType.DATE),
        FieldSpec("production", regex=r"MFG[: ]*(\S+)", type=FieldType.DATE),
        FieldSpec("gtin", regex=r"\(01\)\s*(\S+)", type=FieldType.GTIN, required=False),
    ),
    checks=ChecksSpec(production="production", expiry="expiry"),
)


def test_confusables_only_where_format_demands() -> None:
    fixed = correct_to_mask("D8SF3B42", "A99A9999")
    assert fixed is not None
    assert fixed.value == "D85F3842"
    assert fixed.changes == ("S->5 at 3", "B->8 at 6")
    # a letter slot keeps its letter even when it looks like a digit; a digit in a letter slot becomes one
    assert correct_to_mask("0123", "A999").value == "O123"  # type: ignore[union-attr]
    assert correct_to_mask("AB12", "XX99").changes == ()  # type: ignore[union-attr]
    assert correct_to_mask("A?12", "A999") is None  # "?" is no digit look-alike
    assert correct_to_mask("A12", "A999") is None  # wrong length
    assert correct_digits("O1234S67B9Z").value == "01234567892"
    assert matches_mask("LOT-123", "AAA-999")


@pytest.mark.parametrize(
    ("text", "first", "last"),
    [
        ("2025-05-10", date(2025, 5, 10), date(2025, 5, 10)),
        ("10/05/2025", date(2025, 5, 10), date(2025, 5, 10)),
        ("10.05.25", date(2025, 5, 10), date(2025, 5, 10)),
        ("11/2027", date(2027, 11, 1), date(2027, 11, 30)),
        ("1O/O5/2O25", date(2025, 5, 10), date(2025, 5, 10)),
        ("10 MAY 2025", date(2025, 5, 10), date(2025, 5, 10)),
        ("20250510", date(2025, 5, 10), date(2025, 5, 10)),
        ("FEB 2028", date(2028, 2, 1), date(2028, 2, 29)),
    ],
)
def test_dates_in_several_formats(text: str, first: date, last: date) -> None:
    parsed = parse_label_date(text)
    assert parsed is not None, text
    assert (parsed.first, parsed.last) == (first, last)


def test_date_correction_is_recorded() -> None:
    parsed = parse_label_date("11/2O27")
    assert parsed is not None and parsed.text == "11/2027" and parsed.changes == ("O->0 at 5",)
    assert parse_label_date("banana") is None


def test_gs1_check_digit() -> None:
    assert gs1_check_digit("0950110153000") == 3  # GS1's own example GTIN-13 09501101530003
    assert gs1_valid("09501101530003")
    assert not gs1_valid("09501101530004")


def test_pass_with_corrections_beside_raw() -> None:
    v = evaluate(
        RECIPE,
        result("BATCH: D8SF3842", "EXP 11/2O27", "MFG: 2025-05-10", "(01) O95O1101530003"),
        today=TODAY,
    )
    assert v.status is VerdictStatus.PASS, v.reasons
    fields = v.fields_dict()
    assert fields["batch"] == {
        "value": "D85F3842",
        "found": True,
        "raw": "D8SF3842",
        "corrections": ["S->5 at 3"],
    }
    assert fields["expiry"]["value"] == "11/2027" and fields["expiry"]["date_last"] == "2027-11-30"
    assert fields["gtin"]["value"] == "09501101530003"


def test_fail_reasons() -> None:
    v = evaluate(
        RECIPE,
        result("BATCH: D89F3842", "EXP 01/2026", "MFG: 2026-05-10", "(01) 09501101530004"),
        today=TODAY,
    )
    assert v.status is VerdictStatus.FAIL
    assert "gtin: '09501101530004' fails the GS1 check digit" in v.reasons
    assert any("is not after production" in r for r in v.reasons)
    assert "expiry: expired on 2026-01-31" in v.reasons
    missing = evaluate(RECIPE, result("BATCH: D89F3842", "MFG: 2025-05-10"), today=TODAY)
    assert missing.status is VerdictStatus.FAIL and "expiry: missing" in missing.reasons
    bad_fmt = evaluate(RECIPE, result("BATCH: D8?F3842", "EXP 11/2027", "MFG 2025-05-10"), today=TODAY)
    assert bad_fmt.status is VerdictStatus.FAIL and "does not match format" in bad_fmt.reasons[0]


def test_unreadable() -> None:
    assert evaluate(RECIPE, result(), today=TODAY).status is VerdictStatus.UNREADABLE
    assert evaluate(RECIPE, result("hello world"), today=TODAY).status is VerdictStatus.UNREADABLE
    strict = RecipeConfig("s", RECIPE.fields, ChecksSpec(min_confidence=0.99))
    assert evaluate(strict, result("BATCH: D89F3842"), today=TODAY).status is VerdictStatus.UNREADABLE


def test_expected_todays_lot_and_region() -> None:
    recipe = RecipeConfig(
        "lot",
        (
            FieldSpec("lot", regex=r"LOT\s*(\d+)", expected="{today:%y%m%d}"),
            FieldSpec("line2", region=(0.0, 0.1, 1.0, 0.25)),
        ),
    )
    ok = evaluate(recipe, result("LOT 260310", "LINE B"), today=TODAY)
    assert ok.status is VerdictStatus.PASS and ok.fields["line2"].value == "LINE B"
    bad = evaluate(recipe, result("LOT 260309", "LINE B"), today=TODAY)
    assert bad.reasons == ("lot: read '260309', expected '260310'",)
    assert not read_field(FieldSpec("x", region=(0.0, 0.9, 1.0, 1.0)), result("a")).found
