"""Fields in the store, the rules, the agent and the exports: stored with their result and outbox
row, searchable, corrected like lines, checked by a recipe, exported as CSV, JSON and PPOCRLabel KIE."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from edge_ocr.agent.records import checked, verdict_info
from edge_ocr.cli import main
from edge_ocr.config import ChecksSpec, ConfigError, RecipeConfig, parse_config
from edge_ocr.fields import RECEIPT_FIELDS, Field, ReceiptFields, extract_receipt
from edge_ocr.rules.receipt import check_receipt
from edge_ocr.store import export
from edge_ocr.store.corrections import VerdictOutcome
from edge_ocr.store.db import open_connection
from edge_ocr.store.fields import FieldFilter, correct_field, load_fields
from edge_ocr.store.query import iter_results
from edge_ocr.store.results import CaptureInfo, PageOutcome, store_capture
from edge_ocr.store.review import ReviewError
from edge_ocr.synth.dataset import write_png
from edge_ocr.synth.receipt import generate_receipt
from edge_ocr.types import OcrResult, TextLine
from tests.support import query

RECIPE = RecipeConfig(
    name="expenses",
    extract="receipt",
    checks=ChecksSpec(max_total=100.0, future_date=True, require=("total", "date")),
)


def _receipt_result(seed: int) -> tuple[OcrResult, object]:
    receipt = generate_receipt(np.random.default_rng([77, seed]))
    lines = tuple(TextLine(line.text, 0.97, line.box) for line in receipt.lines)
    h, w = receipt.image.shape[:2]
    return OcrResult(lines=lines, image_size=(w, h), engine="test", model="test/none"), receipt


@pytest.fixture
def store(tmp_path: Path):
    """A store holding three receipts read by the agent's path (fields + verdict), with their images."""
    db = tmp_path / "edge-ocr.db"
    conn = open_connection(db)
    stored = []
    for seed in range(3):
        result, receipt = _receipt_result(seed)
        image = tmp_path / f"receipt{seed}.png"
        write_png(image, receipt.image)  # type: ignore[attr-defined]
        verdict, fields = checked(RECIPE, result)
        cap = CaptureInfo(
            source="folder:/in",
            source_path=str(image),
            width=result.image_size[0],
            height=result.image_size[1],
            recipe="expenses",
        )
        outcome = PageOutcome(cap, result, verdict_info(verdict) if verdict else None, fields)
        stored.append((store_capture(conn, outcome), receipt, fields))
    yield conn, db, stored
    conn.close()


def test_fields_are_stored_with_their_result_and_outbox_row(store) -> None:
    conn, db, stored = store
    for s, _receipt, fields in stored:
        rows = query(
            db, "SELECT name, text, value, boxes FROM result_fields WHERE result_id = ?", (s.result_id,)
        )
        assert {r[0] for r in rows} == set(RECEIPT_FIELDS)
        by_name = {r[0]: r for r in rows}
        assert by_name["total"][2] == fields.total.value
        assert json.loads(by_name["total"][3]) == fields.total.to_dict()["boxes"]
        (payload,) = query(
            db, "SELECT payload FROM outbox WHERE kind = 'result' AND ref_id = ?", (s.result_id,)
        )
        doc = json.loads(payload[0])
        assert doc["fields_kind"] == "receipt"
        assert doc["fields"] == fields.to_dict()
        loaded = load_fields(conn, s.result_id)
        assert loaded is not None and loaded.fields.to_dict() == fields.to_dict()


def test_recipe_checks_use_the_fields(store) -> None:
    _, db, stored = store
    for s, receipt, fields in stored:
        (status, reasons, readings) = query(
            db, "SELECT status, reasons, fields FROM verdicts WHERE id = ?", (s.verdict_id,)
        )[0]
        over = float(receipt.values["total"]) > 100  # type: ignore[attr-defined]
        assert ("above the limit 100" in reasons) == over
        assert status == (
            "fail" if over or date.fromisoformat(receipt.values["date"]) > date.today() else "pass"
        )  # type: ignore[attr-defined]
        assert json.loads(readings)["total"]["value"] == fields.total.value


def test_search_and_field_filters(store) -> None:
    conn, _, stored = store
    totals = {s.result_id: float(fields.total.value) for s, _, fields in stored}
    got = [r.result_id for r in iter_results(conn, field_filters=[FieldFilter.parse("total>=100")])]
    assert got == sorted(i for i, t in totals.items() if t >= 100)
    s, receipt, fields = stored[0]
    word = fields.company.text.split()[0]
    assert s.result_id in [r.result_id for r in iter_results(conn, search=word)]
    assert s.result_id in [
        r.result_id for r in iter_results(conn, field_filters=[FieldFilter.parse(f"company~{word.lower()}")])
    ]
    day = fields.date.value
    assert s.result_id in [
        r.result_id for r in iter_results(conn, field_filters=[FieldFilter.parse(f"date={day}")])
    ]
    for bad in ("total>=lots", "colour=red", "total"):
        with pytest.raises(ValueError, match="field filter"):
            FieldFilter.parse(bad)
    row = next(iter_results(conn))
    contract = row.to_contract()
    assert set(contract["data"]["fields"]) == set(RECEIPT_FIELDS)


def test_correcting_a_field(store) -> None:
    conn, db, stored = store
    s, _, fields = stored[0]
    seen = []

    def evaluate(recipe, lines, new_fields):
        seen.append((recipe, len(lines), new_fields.total.value))
        return VerdictOutcome("fail", ("total: 250.00 is above the limit 100",), {"total": "250.00"})

    out = correct_field(conn, s.result_id, "total", "RM 250.00", by="ana", evaluate=evaluate)
    total = out.fields.total
    assert total is not None and (total.text, total.value, total.confidence) == ("RM 250.00", "250.00", 1.0)
    assert total.boxes == fields.total.boxes  # where it was read stays
    assert out.corrected == {"total": fields.total.text}
    assert [(r, v) for r, _, v in seen] == [("expenses", "250.00")] and seen[0][1] > 0
    assert query(db, "SELECT review_state, verdict FROM results WHERE id = ?", (s.result_id,)) == [
        ("corrected", "fail")
    ]
    assert query(db, "SELECT name, before, after, by FROM field_corrections") == [
        ("total", fields.total.text, "RM 250.00", "ana")
    ]
    (payload,) = query(db, "SELECT payload FROM outbox WHERE kind = 'field_correction'")
    assert json.loads(payload[0])["value"] == "250.00"
    assert query(db, "SELECT kind FROM events WHERE kind = 'result.field_corrected'")
    # found by the corrected amount, and by the words a reviewer typed
    assert s.result_id in [
        r.result_id for r in iter_results(conn, field_filters=[FieldFilter.parse("total>200")])
    ]
    correct_field(conn, s.result_id, "company", "Corrected Trading Co", by="ana")
    assert s.result_id in [r.result_id for r in iter_results(conn, search="corrected trading")]
    # a second correction keeps the extractor's first reading
    again = correct_field(conn, s.result_id, "total", "251.00", by="bo")
    assert again.corrected["total"] == fields.total.text
    # an empty text: the field is not on the page
    gone = correct_field(conn, s.result_id, "date", "", by="bo")
    assert gone.fields.date is None and "reviewer bo" in gone.fields.missing["date"]


def test_a_failing_correction_changes_nothing(store) -> None:
    conn, db, stored = store
    s = stored[0][0]
    before = query(db, "SELECT * FROM result_fields ORDER BY id")

    def broken(recipe, lines, fields):
        raise RuntimeError("rules crashed")

    with pytest.raises(RuntimeError):
        correct_field(conn, s.result_id, "total", "1.00", by="ana", evaluate=broken)
    with pytest.raises(ReviewError, match="no field"):
        correct_field(conn, s.result_id, "colour", "red", by="ana")
    with pytest.raises(ReviewError, match="no fields read"):
        correct_field(conn, 999_999, "total", "1.00", by="ana")
    assert query(db, "SELECT * FROM result_fields ORDER BY id") == before
    assert query(db, "SELECT count(*) FROM field_corrections") == [(0,)]


def test_exports_carry_the_fields(store, tmp_path: Path) -> None:
    conn, _, stored = store
    rows = list(iter_results(conn))
    buf = io.StringIO()
    export.write_csv(rows, buf)
    table = list(csv.DictReader(io.StringIO(buf.getvalue())))
    for row, (_, _, fields) in zip(table, stored):
        assert row["total"] == fields.total.value and row["date"] == fields.date.value
        assert row["company"] == fields.company.text
    buf = io.StringIO()
    export.write_jsonl(rows, buf)
    docs = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert docs[0]["data"]["fields"] == stored[0][2].to_dict()
    report = export.write_ppocrlabel(conn, rows, tmp_path / "kie")
    assert report.images == 3
    assert (tmp_path / "kie" / "class_list.txt").read_text().split() == [
        "company",
        "date",
        "address",
        "total",
        "None",
    ]
    first = (tmp_path / "kie" / "Label.txt").read_text(encoding="utf-8").splitlines()[0]
    entries = json.loads(first.split("\t", 1)[1])
    classes = [e["key_cls"] for e in entries]
    fields = stored[0][2]
    assert classes.count("total") == len(fields.total.boxes)
    assert classes.count("address") == len(fields.address.boxes)
    (i,) = [k for k, c in enumerate(classes) if c == "total"]
    assert fields.total.text in entries[i]["transcription"]


def test_results_cli_field_filter(store, capsys: pytest.CaptureFixture[str]) -> None:
    _, db, stored = store
    assert main(["results", "--db", str(db), "--json", "--field", "total>=0"]) == 0
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(docs) == 3 and all("fields" in d["data"] for d in docs)
    assert main(["results", "--db", str(db), "--field", "total>=lots"]) != 0


# -- rules and config ------------------------------------------------------------------------------


def _f(text: str, value: str | None) -> Field:
    return Field(text, value, 0.9, ())


def test_check_receipt() -> None:
    today = date(2026, 1, 10)
    checks = ChecksSpec(max_total=50.0, future_date=True, require=("company",))
    ok = {"total": _f("49.99", "49.99"), "date": _f("10/01/2026", "2026-01-10"), "company": _f("X", None)}
    assert check_receipt(checks, ok, today) == []
    bad = {"total": _f("50.01", "50.01"), "date": _f("11/01/2026", "2026-01-11"), "company": None}
    assert check_receipt(checks, bad, today) == [
        "company: not found on the receipt",
        "total: 50.01 is above the limit 50",
        "date: 2026-01-11 is in the future",
    ]
    odd = {"total": _f("??", None), "date": _f("??", None)}
    assert len(check_receipt(checks, odd, today)) == 3


def test_recipe_config_for_receipts() -> None:
    cfg = parse_config(
        {
            "recipes": {
                "r": {
                    "extract": "receipt",
                    "date_order": "mdy",
                    "checks": {"max_total": 500, "require": ["total"]},
                }
            }
        },
        env={},
    )
    recipe = cfg.recipes["r"]
    assert (recipe.extract, recipe.date_order, recipe.checks.max_total) == ("receipt", "mdy", 500.0)
    for raw, msg in (
        ({"extract": "invoice"}, "not a kind of fields"),
        ({"checks": {"max_total": 5}}, "set extract"),
        ({"extract": "receipt", "checks": {"require": ["colour"]}}, "not a receipt field"),
        ({"extract": "receipt", "date_order": "dym"}, "date_order"),
        ({"extract": "receipt", "checks": {"max_total": -1}}, "out of range"),
    ):
        with pytest.raises(ConfigError, match=msg):
            parse_config({"recipes": {"r": raw}}, env={})


def test_config_names_match_the_extractor() -> None:
    from edge_ocr import config
    from edge_ocr.fields import FieldKind
    from edge_ocr.fields.normalize import DATE_ORDERS

    assert config.RECEIPT_FIELD_NAMES == RECEIPT_FIELDS
    assert tuple(k.value for k in FieldKind) == config.EXTRACT_KINDS
    assert config.DATE_ORDERS == DATE_ORDERS


def test_receipt_recipe_on_a_page_without_text() -> None:
    empty = OcrResult(lines=(), image_size=(10, 10), engine="t", model="t")
    verdict, fields = checked(RECIPE, empty)
    assert fields is not None and fields.total is None
    assert verdict is not None and verdict.status.value == "unreadable"


def test_fields_round_trip_through_receipt_fields() -> None:
    lines = (TextLine("TOTAL 5.00", 0.9, ((0, 0), (90, 0), (90, 20), (0, 20))),)
    got = extract_receipt(lines)
    assert ReceiptFields.from_dict(got.to_dict(), got.missing).to_dict() == got.to_dict()
