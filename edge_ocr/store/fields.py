"""Fields read from a result's page (receipts: company, date, address, total): stored with the
result, found by search, corrected by reviewers.

A correction replaces a field's text, normalises it again (a date or an amount the reviewer typed
gets its value), keeps the extractor's reading as `raw_text`, and is written with its audit event,
a `field_corrections` row, a new verdict when the recipe's rules are given, and an outbox row, in
one transaction.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from edge_ocr.fields import RECEIPT_FIELDS, Field, ReceiptFields
from edge_ocr.fields.normalize import amount_text, find_amounts, find_dates
from edge_ocr.store.db import utcnow
from edge_ocr.store.events import log_event
from edge_ocr.store.outbox import enqueue
from edge_ocr.store.review import ReviewError


def insert_fields(conn: sqlite3.Connection, result_id: int, kind: str, fields: ReceiptFields) -> None:
    """Store a result's fields (inside the caller's transaction)."""
    conn.execute("UPDATE results SET fields_kind = ? WHERE id = ?", (kind, result_id))
    missing = fields.missing_dict()
    for name, f in fields.items():
        conn.execute(
            "INSERT INTO result_fields (result_id, name, text, value, amount, currency, confidence, boxes, missing) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                result_id,
                name,
                f.text if f else None,
                f.value if f else None,
                _amount(name, f.value) if f else None,
                f.currency if f else None,
                f.confidence if f else None,
                json.dumps(f.to_dict()["boxes"]) if f else "[]",
                missing.get(name),
            ),
        )


def _amount(name: str, value: str | None) -> float | None:
    if name != "total" or value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class StoredFields:
    """A result's fields as stored, with which ones a reviewer corrected."""

    kind: str
    fields: ReceiptFields
    corrected: dict[str, str]  # name -> the extractor's text before the correction

    def contract(self) -> dict[str, Any]:
        return self.fields.contract()


# SQL giving one result's fields as a JSON object {name: {text, value, confidence, boxes, currency}
# | {missing}}: one column, so listing and export read fields with their results in one query
FIELDS_JSON_SQL = (
    "(SELECT json_group_object(f.name, CASE WHEN f.text IS NULL THEN json_object('missing', f.missing) "
    "ELSE json_object('text', f.text, 'value', f.value, 'confidence', f.confidence, 'boxes', json(f.boxes), "
    "'currency', f.currency) END) FROM result_fields f WHERE f.result_id = r.id)"
)


def fields_from_json(kind: str | None, raw: str | None) -> ReceiptFields | None:
    """The ReceiptFields of FIELDS_JSON_SQL's column (None when the result had no fields read)."""
    if not kind or raw is None:
        return None
    doc = json.loads(raw)
    found = {k: v for k, v in doc.items() if isinstance(v, dict) and v.get("text") is not None}
    missing = {
        k: str(v.get("missing") or "not found")
        for k, v in doc.items()
        if k not in found and isinstance(v, dict)
    }
    return ReceiptFields.from_dict(found, missing)


def load_fields(conn: sqlite3.Connection, result_id: int) -> StoredFields | None:
    row = conn.execute("SELECT fields_kind FROM results WHERE id = ?", (result_id,)).fetchone()
    if row is None or not row[0]:
        return None
    found: dict[str, Field | None] = {}
    missing: dict[str, str] = {}
    corrected: dict[str, str] = {}
    for name, text, value, currency, confidence, boxes, why, raw, at in conn.execute(
        "SELECT name, text, value, currency, confidence, boxes, missing, raw_text, corrected_at "
        "FROM result_fields WHERE result_id = ?",
        (result_id,),
    ):
        if name not in RECEIPT_FIELDS:
            continue
        if text is None:
            found[name] = None
            missing[name] = why or "not found"
        else:
            quads = tuple(tuple((float(x), float(y)) for x, y in q) for q in json.loads(boxes or "[]"))
            found[name] = Field(text, value, float(confidence or 0.0), quads, currency)  # type: ignore[arg-type]
        if at is not None:
            corrected[name] = raw or ""
    return StoredFields(row[0], ReceiptFields(**found, missing=missing), corrected)


def normalise(name: str, text: str) -> tuple[str | None, str | None]:
    """The value (and currency) of a field's text as a reviewer typed it."""
    if name == "date":
        dates = find_dates(text)
        return (dates[0].value.isoformat() if dates else None), None
    if name == "total":
        amounts = find_amounts(text)
        if not amounts:
            return None, None
        a = amounts[-1]
        return amount_text(a.value), a.currency
    return None, None


FieldEvaluator = Callable[[str | None, Sequence[Any], ReceiptFields], Any]


def correct_field(
    conn: sqlite3.Connection,
    result_id: int,
    name: str,
    new_text: str,
    *,
    by: str,
    evaluate: FieldEvaluator | None = None,
) -> StoredFields:
    """Store a reviewer's correction of one field (see the module docstring). An empty text marks
    the field as not on the page. `evaluate(recipe, lines, fields)` returns a VerdictOutcome or None."""
    if name not in RECEIPT_FIELDS:
        raise ReviewError(f"no field {name!r} (fields: {', '.join(RECEIPT_FIELDS)})")
    new_text = " ".join(new_text.split())
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute(
            "SELECT r.recipe, r.verdict, r.lines, f.text, f.raw_text, f.corrected_at FROM results r "
            "JOIN result_fields f ON f.result_id = r.id AND f.name = ? WHERE r.id = ?",
            (name, result_id),
        ).fetchone()
        if row is None:
            raise ReviewError(f"result {result_id} has no fields read")
        recipe, verdict, lines_json, before, raw, corrected_at = row
        if (before or "") != new_text:
            at = utcnow()
            value, currency = normalise(name, new_text)
            conn.execute(
                "UPDATE result_fields SET text = ?, value = ?, amount = ?, currency = COALESCE(?, currency), "
                "confidence = ?, missing = ?, raw_text = ?, corrected_at = ?, corrected_by = ? "
                "WHERE result_id = ? AND name = ?",
                (
                    new_text or None,
                    value,
                    _amount(name, value),
                    currency,
                    1.0 if new_text else None,
                    None if new_text else f"not on the page (reviewer {by})",
                    raw if corrected_at is not None else before,
                    at,
                    by,
                    result_id,
                    name,
                ),
            )
            cur = conn.execute(
                "INSERT INTO field_corrections (result_id, name, before, after, at, by) VALUES (?, ?, ?, ?, ?, ?)",
                (result_id, name, before, new_text, at, by),
            )
            correction_id = int(cur.lastrowid)
            stored = load_fields(conn, result_id)
            assert stored is not None
            outcome = None
            if evaluate is not None:
                from edge_ocr.types import TextLine

                lines = [TextLine.from_dict(d) for d in json.loads(lines_json or "[]")]
                outcome = evaluate(recipe, lines, stored.fields)
            if outcome is not None:
                verdict = outcome.status
                conn.execute(
                    "INSERT INTO verdicts (result_id, created_at, recipe, status, reasons, fields) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        result_id,
                        at,
                        recipe,
                        outcome.status,
                        json.dumps(list(outcome.reasons), ensure_ascii=False),
                        json.dumps(outcome.fields, ensure_ascii=False),
                    ),
                )
            conn.execute(
                "UPDATE results SET verdict = ?, review_state = 'corrected', reviewed_at = ?, reviewed_by = ? "
                "WHERE id = ?",
                (verdict, at, by, result_id),
            )
            log_event(
                conn,
                "result.field_corrected",
                f"field {name} of result {result_id} corrected by {by}",
                subject=f"result:{result_id}",
                actor=by,
                data={"field": name, "before": before, "after": new_text, "verdict": verdict},
            )
            new = stored.fields.get(name)
            enqueue(
                conn,
                "field_correction",
                correction_id,
                {
                    "result_id": result_id,
                    "field": name,
                    "before": before,
                    "after": new_text,
                    "value": new.value if new else None,
                    "at": at,
                    "by": by,
                    "verdict": verdict,
                },
            )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    stored = load_fields(conn, result_id)
    assert stored is not None
    return stored


# -- search ------------------------------------------------------------------------------------

_FILTER = re.compile(r"^\s*(company|date|address|total)\s*(>=|<=|!=|=|>|<|~)\s*(.*?)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class FieldFilter:
    """`total>=100`, `date<2018-04-01` (ISO dates compare as text), `company~ikano` (words in the
    field's text), `address=...` (equal text, case-insensitive)."""

    name: str
    op: str
    operand: str

    @classmethod
    def parse(cls, text: str) -> FieldFilter:
        m = _FILTER.match(text)
        if not m or not m.group(3):
            raise ValueError(
                f"field filter {text!r}: write NAME OP VALUE with NAME one of {', '.join(RECEIPT_FIELDS)} "
                "and OP one of = != > >= < <= ~ (e.g. total>=100, date<2018-04-01, company~ikano)"
            )
        flt = cls(m.group(1).lower(), m.group(2), m.group(3))
        if flt.name == "total" and flt.op not in ("~",):
            try:
                float(flt.operand)
            except ValueError:
                raise ValueError(f"field filter {text!r}: {flt.operand!r} is not a number") from None
        return flt

    def sql(self) -> tuple[str, list[Any]]:
        """A condition on `r.id` and its parameters."""
        base = "r.id IN (SELECT result_id FROM result_fields WHERE name = ? AND "
        if self.op == "~":
            words = re.findall(r"\w+", self.operand)
            query = " ".join('"' + w.replace('"', '""') + '"*' for w in words) or '""'
            return (
                base + "id IN (SELECT rowid FROM result_fields_fts WHERE result_fields_fts MATCH ?))",
                [self.name, query],
            )
        op = "<>" if self.op == "!=" else self.op
        if self.name == "total":
            return base + f"amount {op} ?)", [self.name, float(self.operand)]
        if self.name == "date":
            return base + f"value {op} ?)", [self.name, self.operand]
        return base + f"lower(text) {op} lower(?))", [self.name, self.operand]
