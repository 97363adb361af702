"""Receipt fields: the extractor on generated receipts with known fields, the normalisers, and bad
input (no lines, two totals, a date that does not parse, another language, degenerate boxes)."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from edge_ocr.errors import ConfigError
from edge_ocr.fields import RECEIPT_FIELDS, Field, ReceiptFields, ReceiptOptions, extract_receipt
from edge_ocr.fields.normalize import digitize, find_amounts, find_dates, tidy_name
from edge_ocr.fields.scorer import default_scorer, load_scorer
from edge_ocr.synth.receipt import generate_receipt
from edge_ocr.types import OcrResult, TextLine


def _lines(receipt) -> tuple[TextLine, ...]:
    return tuple(TextLine(line.text, 0.98, line.box) for line in receipt.lines)


def _row(text: str, y: float, x: float = 20.0, h: float = 20.0, conf: float = 0.95) -> TextLine:
    w = max(8.0 * len(text), 8.0)
    return TextLine(text, conf, ((x, y), (x + w, y), (x + w, y + h), (x, y + h)))


def _receipt(rows: list[tuple[str, ...]], y0: float = 20.0) -> tuple[TextLine, ...]:
    """Rows of (left text[, right text]) stacked top to bottom."""
    out = []
    for i, row in enumerate(rows):
        y = y0 + i * 28
        out.append(_row(row[0], y))
        if len(row) > 1:
            out.append(_row(row[1], y, x=420.0 - 8 * len(row[1])))
    return tuple(out)


SIMPLE = [
    ("GOLDEN HARDWARE SDN BHD",),
    ("(123456-X)",),
    ("NO. 12, JALAN MERANTI 3,",),
    ("47400 PETALING JAYA, SELANGOR.",),
    ("TEL: 03-7781 2345",),
    ("TAX INVOICE",),
    ("DATE: 25/12/2018 20:13",),
    ("PAINT BRUSH 2IN", "12.50"),
    ("SUBTOTAL", "12.50"),
    ("GST 6%", "0.75"),
    ("TOTAL", "13.25"),
    ("CASH", "20.00"),
    ("CHANGE", "6.75"),
    ("THANK YOU",),
]


# -- generated receipts with known fields ---------------------------------------------------------


def test_generated_receipts_read_into_their_fields() -> None:
    """On 40 generated receipts (six locales, every layout variant), read from their printed lines:
    the date's and total's values, and the company's and address's text, as the generator printed
    them. The figures are the extractor's own on this seed; a regression drops them."""
    right = dict.fromkeys(RECEIPT_FIELDS, 0)
    n = 40
    for i in range(n):
        receipt = generate_receipt(np.random.default_rng([1000, i]))
        got = extract_receipt(_lines(receipt))
        for name in RECEIPT_FIELDS:
            f = got.get(name)
            if f is None:
                continue
            if name == "date":
                right[name] += f.value == receipt.values["date"]
            elif name == "total":
                right[name] += f.value == receipt.values["total"]
            else:
                right[name] += " ".join(f.text.upper().split()) == " ".join(
                    receipt.fields[name].upper().split()
                )
    assert right["date"] >= 0.95 * n, right
    assert right["total"] >= 0.9 * n, right
    assert right["company"] >= 0.8 * n, right
    assert right["address"] >= 0.6 * n, right


def test_field_carries_text_value_confidence_and_boxes() -> None:
    lines = _receipt(SIMPLE)
    got = extract_receipt(lines)
    assert got.total is not None and got.total.value == "13.25" and got.total.text == "13.25"
    assert got.date is not None and got.date.value == "2018-12-25" and got.date.text == "25/12/2018"
    assert got.company is not None and got.company.text == "GOLDEN HARDWARE SDN BHD"
    assert got.address is not None
    assert got.address.text == "NO. 12, JALAN MERANTI 3, 47400 PETALING JAYA, SELANGOR."
    assert got.address.boxes == (lines[2].box, lines[3].box)
    assert got.total.boxes == (lines[14].box,)
    for _, f in got.items():
        assert f is not None and 0.0 < f.confidence <= 1.0
    assert got.missing == {}
    # the contract's shape, and back
    d = got.to_dict()
    assert set(d) == set(RECEIPT_FIELDS)
    assert set(d["total"]) == {"text", "value", "confidence", "boxes"}
    assert json.loads(json.dumps(d)) == d
    again = ReceiptFields.from_dict(d)
    assert again.total is not None and again.total.value == "13.25"


def test_total_is_the_largest_amount_near_total_not_subtotal_or_cash() -> None:
    rows = list(SIMPLE)
    rows[8] = ("SUBTOTAL", "12.50")
    rows[11] = ("CASH", "50.00")  # the largest amount on the page is cash tendered
    got = extract_receipt(_receipt(rows))
    assert got.total is not None and got.total.value == "13.25"


def test_total_printed_with_its_currency() -> None:
    rows = list(SIMPLE)
    rows[10] = ("NETT TOTAL", "RM13.25")
    got = extract_receipt(_receipt(rows))
    assert got.total is not None
    assert (got.total.text, got.total.value, got.total.currency) == ("RM13.25", "13.25", "MYR")
    rows[10] = ("SUMME", "13,25 €")
    got = extract_receipt(_receipt(rows))
    assert got.total is not None and (got.total.value, got.total.currency) == ("13.25", "EUR")


def test_ocr_slips_in_keywords_and_digits() -> None:
    rows = list(SIMPLE)
    rows[6] = ("DATE: 25/I2/2O18 20:13",)  # look-alike letters in the date
    rows[10] = ("T0TAL", "13.25")  # a zero in the keyword
    rows[0] = ("GOLDEN HARDWARE SON BHD",)  # a misread legal suffix
    got = extract_receipt(_receipt(rows))
    assert got.date is not None and (got.date.text, got.date.value) == ("25/12/2018", "2018-12-25")
    assert got.total is not None and got.total.value == "13.25"
    assert got.company is not None and got.company.text == "GOLDEN HARDWARE SDN BHD"


def test_company_name_split_over_two_lines() -> None:
    rows = [("LIAN CHI PU TIAN VEGETARIAN",), ("RESTAURANT SDN BHD",), *SIMPLE[1:]]
    got = extract_receipt(_receipt(rows))
    assert got.company is not None and got.company.text == "LIAN CHI PU TIAN VEGETARIAN RESTAURANT SDN BHD"
    assert len(got.company.boxes) == 2


def test_month_first_date_order() -> None:
    rows = list(SIMPLE)
    rows[6] = ("DATE: 03/04/2018",)
    assert extract_receipt(_receipt(rows)).date.value == "2018-04-03"  # type: ignore[union-attr]
    assert extract_receipt(_receipt(rows), ReceiptOptions(date_order="mdy")).date.value == "2018-03-04"  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="date_order"):
        ReceiptOptions(date_order="dym")


# -- bad input ------------------------------------------------------------------------------------


def test_no_lines_gives_null_fields_with_a_reason() -> None:
    for lines in ((), (TextLine("   ", 0.5, ((0, 0), (1, 0), (1, 1), (0, 1))),)):
        got = extract_receipt(lines)
        assert all(f is None for _, f in got.items())
        assert got.missing_dict() == dict.fromkeys(RECEIPT_FIELDS, "no text was read")
    result = OcrResult(lines=(), image_size=(10, 10), engine="fake", model="fake/none")
    assert extract_receipt(result).total is None


def test_two_totals_take_the_grand_total() -> None:
    rows = list(SIMPLE)
    rows[8] = ("TOTAL", "12.50")  # a first "total" before tax
    rows.insert(11, ("GRAND TOTAL", "13.25"))
    rows[10] = ("GST 6%", "0.75")
    got = extract_receipt(_receipt(rows))
    assert got.total is not None and got.total.value == "13.25"


def test_a_date_that_does_not_parse_is_null_with_a_reason() -> None:
    rows = [r for r in SIMPLE if not r[0].startswith("DATE")]
    rows.insert(6, ("DATE: 31/02/2018",))  # no 31st of February
    got = extract_receipt(_receipt(rows))
    assert got.date is None
    assert "no date" in got.missing["date"]
    assert got.total is not None and got.total.value == "13.25"


def test_a_receipt_in_another_script() -> None:
    rows = [
        ("北京市海淀区便利店",),
        ("地址：中关村大街1号",),
        ("日期 2018-03-05",),
        ("合计", "45.00"),
        ("谢谢惠顾",),
    ]
    got = extract_receipt(_receipt(rows))
    assert got.company is None and got.address is None
    assert "not in Latin script" in got.missing["company"]
    assert got.date is None or got.date.value == "2018-03-05"
    assert got.total is None or got.total.value == "45.00"
    for name, f in got.items():
        assert (f is None) == (name in got.missing)


def test_degenerate_boxes_and_odd_text_do_not_crash() -> None:
    flat = ((5.0, 5.0), (5.0, 5.0), (5.0, 5.0), (5.0, 5.0))
    lines = (
        TextLine("TOTAL 9.99", 0.9, flat),
        TextLine("\x00\ufffd" * 50, 0.1, ((0, 0), (1e6, 0), (1e6, 1), (0, 1))),
        TextLine("9" * 500 + ".00", 0.5, ((0, -50), (10, -50), (10, -40), (0, -40))),
        TextLine("DATE 01/01/1900", 0.9, ((0, 100), (50, 100), (50, 120), (0, 120))),
    )
    got = extract_receipt(lines)
    for name, f in got.items():
        assert f is None or isinstance(f, Field)
        assert (f is None) == (name in got.missing)


def test_many_lines() -> None:
    rows = [(f"ITEM {i}", f"{i}.{i % 100:02d}") for i in range(1500)] + [("TOTAL", "99999.99")]
    got = extract_receipt(_receipt(rows))
    assert got.total is not None


# -- normalisers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "printed", "value"),
    [
        ("DATE: 25/12/2018 8:13:39 PM", "25/12/2018", date(2018, 12, 25)),
        ("12-01-19", "12-01-19", date(2019, 1, 12)),
        ("2018.03.05", "2018.03.05", date(2018, 3, 5)),
        ("03 Mar 2018 18:22", "03 Mar 2018", date(2018, 3, 3)),
        ("28 MAR 18 18:32:36", "28 MAR 18", date(2018, 3, 28)),
        ("14. Dezember 2019", "14. Dezember 2019", date(2019, 12, 14)),
        ("Mar 3, 2018", "Mar 3, 2018", date(2018, 3, 3)),
        ("25032018", "25032018", date(2018, 3, 25)),
        ("05 02-18", "05-02-18", date(2018, 2, 5)),  # a separator OCR dropped
        ("09/02/201811:40", "09/02/2018", date(2018, 2, 9)),  # the time glued to the year
        ("25/I2/2O18", "25/12/2018", date(2018, 12, 25)),
    ],
)
def test_find_dates(text: str, printed: str, value: date) -> None:
    found = find_dates(text)
    assert [(d.text, d.value) for d in found] == [(printed, value)]


def test_find_dates_rejects_what_is_not_a_date() -> None:
    for text in ("31/02/2018", "1.234,56", "TEL 03-7781 2345", "INV 18287/102/T0049", "12/2018", "99.99.99"):
        assert find_dates(text) == (), text


@pytest.mark.parametrize(
    ("text", "printed", "value", "currency"),
    [
        ("TOTAL RM4.00", "RM4.00", "4.00", "MYR"),
        ("RM 37.10", "37.10", "37.10", "MYR"),
        ("$8.20", "$8.20", "8.20", "$"),
        ("1,234.56", "1,234.56", "1234.56", None),
        ("1.234,56 €", "1.234,56", "1234.56", "EUR"),
        ("12,50EUR", "12,50EUR", "12.50", "EUR"),
        ("-2.37", "-2.37", "-2.37", None),
        ("£1O.5O", "£10.50", "10.50", "GBP"),
    ],
)
def test_find_amounts(text: str, printed: str, value: str, currency: str | None) -> None:
    (m,) = find_amounts(text)
    assert (m.text, m.value, m.currency) == (printed, Decimal(value), currency)


def test_digitize_keeps_words() -> None:
    assert digitize("TOTAL SDN BHD SOLD") == "TOTAL SDN BHD SOLD"
    assert digitize("2O18-O3-O5") == "2018-03-05"
    assert len(digitize("x" * 30)) == 30


def test_tidy_name() -> None:
    assert tidy_name("SUN VICTORY SON BHD") == "SUN VICTORY SDN BHD"
    assert tidy_name("S.H.H.MOTOR ( SUNGAI RENGIT ) SDN. BHD.") == "S.H.H.MOTOR (SUNGAI RENGIT) SDN. BHD."
    assert tidy_name("Nando's Sdn Bnd") == "Nando's Sdn Bhd"


# -- the scorer ----------------------------------------------------------------------------------


def test_shipped_scorer_is_numbers_for_every_field() -> None:
    scorer = default_scorer()
    assert set(scorer.models) == set(RECEIPT_FIELDS)
    model = scorer.models["total"]
    feats = {"kw_total": 1.0, "is_max_not_tender": 1.0}
    parts = model.contributions(feats)
    z = sum(parts.values()) + model.bias
    assert model.probabilities([feats])[0] == pytest.approx(1 / (1 + np.exp(-z)))
    # the weights read as rules: the largest amount not tendered counts for, a low rank against
    assert parts["is_max_not_tender"] > 0 and model.contributions({"value_rank": 1.0})["value_rank"] < 0


def test_a_damaged_scorer_file_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "s.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot read"):
        load_scorer(bad)
    doc = default_scorer().to_dict()
    doc["fields"]["total"]["weights"] = doc["fields"]["total"]["weights"][:-1]
    bad.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(ConfigError, match="finite numbers"):
        load_scorer(bad)
