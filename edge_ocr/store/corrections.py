"""Reviewer actions: load one result with its history, correct a line, accept or reject.

Every write runs in one `BEGIN IMMEDIATE` transaction together with its audit event and outbox
row, so a correction is stored, audited and queued for sync at once or not at all.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_ocr.store.db import utcnow
from edge_ocr.store.events import log_event
from edge_ocr.store.fields import StoredFields, load_fields
from edge_ocr.store.outbox import enqueue
from edge_ocr.store.query import exact_path
from edge_ocr.store.review import ReviewError
from edge_ocr.types import TextLine


@dataclass(frozen=True)
class Correction:
    line_index: int
    before: str
    after: str
    at: str
    by: str


@dataclass(frozen=True)
class ResultDetail:
    """Everything the review page shows for one result."""

    id: int
    capture_id: int
    created_at: str
    source: str
    source_path: str | None
    image_path: str | None  # display form
    width: int | None
    height: int | None
    recipe: str | None
    engine: str
    model: str
    text: str
    corrected_text: str | None
    confidence: float
    lines: tuple[TextLine, ...]
    verdict: str | None
    verdict_reasons: tuple[str, ...]
    review_state: str
    reviewed_at: str | None
    reviewed_by: str | None
    corrections: tuple[Correction, ...]
    image_file: Path | None = None  # the file to open: by the exact bytes of its name when kept
    fields: StoredFields | None = None  # when the page's fields were read (receipts)


@dataclass(frozen=True)
class VerdictOutcome:
    """What re-running a recipe's rules gave; written as a new `verdicts` row."""

    status: str
    reasons: tuple[str, ...] = ()
    fields: dict[str, str] = field(default_factory=dict)


Evaluator = Callable[[str | None, Sequence[TextLine]], VerdictOutcome | None]


# ---------------------------------------------------------------------------------------------
# one result


def load_result(conn: sqlite3.Connection, result_id: int) -> ResultDetail:
    row = conn.execute(
        "SELECT r.id, r.capture_id, r.created_at, c.source, c.source_path, c.stored_image, c.width, c.height, "
        "r.recipe, r.engine, r.model, r.text, r.corrected_text, r.confidence, r.lines, r.verdict, "
        "r.review_state, r.reviewed_at, r.reviewed_by, c.source_path_raw, c.stored_image_raw "
        "FROM results r JOIN captures c ON c.id = r.capture_id WHERE r.id = ?",
        (result_id,),
    ).fetchone()
    if row is None:
        raise ReviewError(f"no result {result_id}")
    reasons_row = conn.execute(
        "SELECT reasons FROM verdicts WHERE result_id = ? ORDER BY id DESC LIMIT 1", (result_id,)
    ).fetchone()
    reasons = tuple(json.loads(reasons_row[0])) if reasons_row else ()
    corrections = tuple(
        Correction(*r)
        for r in conn.execute(
            "SELECT line_index, before, after, at, by FROM corrections WHERE result_id = ? ORDER BY id",
            (result_id,),
        )
    )
    lines = tuple(TextLine.from_dict(d) for d in json.loads(row[14] or "[]"))
    return ResultDetail(
        id=row[0],
        capture_id=row[1],
        created_at=row[2],
        source=row[3],
        source_path=row[4],
        image_path=row[5] or row[4],
        width=row[6],
        height=row[7],
        recipe=row[8],
        engine=row[9],
        model=row[10],
        text=row[11],
        corrected_text=row[12],
        confidence=row[13],
        lines=lines,
        verdict=row[15],
        verdict_reasons=reasons,
        review_state=row[16],
        reviewed_at=row[17],
        reviewed_by=row[18],
        corrections=corrections,
        image_file=exact_path(row[20], row[5]) if row[5] else exact_path(row[19], row[4]),
        fields=load_fields(conn, result_id),
    )


# ---------------------------------------------------------------------------------------------
# reviewer actions (each one transaction: change + audit event + outbox row)


def _write(conn: sqlite3.Connection, work: Callable[[], Any]) -> Any:
    conn.execute("BEGIN IMMEDIATE")
    try:
        out = work()
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return out


def correct_line(
    conn: sqlite3.Connection,
    result_id: int,
    line_index: int,
    new_text: str,
    *,
    by: str,
    evaluate: Evaluator | None = None,
) -> ResultDetail:
    """Store a reviewer's correction of one line: the corrections row (before/after, who, when),
    the result's corrected text and lines (the original reading kept as `raw_text`), review state
    `corrected`, a new verdict from `evaluate` (the recipe's rules) when given, an audit event and
    an outbox row, all in one transaction. Returns the updated result."""
    new_text = new_text.strip()

    def work() -> None:
        row = conn.execute("SELECT lines, recipe, verdict FROM results WHERE id = ?", (result_id,)).fetchone()
        if row is None:
            raise ReviewError(f"no result {result_id}")
        lines = json.loads(row[0] or "[]")
        if not 0 <= line_index < len(lines):
            raise ReviewError(f"result {result_id} has no line {line_index}")
        before = lines[line_index]["text"]
        if before == new_text:
            return
        lines[line_index].setdefault("raw_text", before)
        lines[line_index]["text"] = new_text
        corrected = "\n".join(line["text"] for line in lines)
        at = utcnow()
        cur = conn.execute(
            "INSERT INTO corrections (result_id, line_index, before, after, at, by) VALUES (?, ?, ?, ?, ?, ?)",
            (result_id, line_index, before, new_text, at, by),
        )
        correction_id = int(cur.lastrowid)
        verdict = row[2]
        outcome = evaluate(row[1], [TextLine.from_dict(d) for d in lines]) if evaluate else None
        if outcome is not None:
            verdict = outcome.status
            conn.execute(
                "INSERT INTO verdicts (result_id, created_at, recipe, status, reasons, fields) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    result_id,
                    at,
                    row[1],
                    outcome.status,
                    json.dumps(list(outcome.reasons), ensure_ascii=False),
                    json.dumps(outcome.fields, ensure_ascii=False),
                ),
            )
        conn.execute(
            "UPDATE results SET corrected_text = ?, lines = ?, verdict = ?, review_state = 'corrected', "
            "reviewed_at = ?, reviewed_by = ? WHERE id = ?",
            (corrected, json.dumps(lines, ensure_ascii=False), verdict, at, by, result_id),
        )
        log_event(
            conn,
            "result.corrected",
            f"line {line_index} of result {result_id} corrected by {by}",
            subject=f"result:{result_id}",
            actor=by,
            data={"line_index": line_index, "before": before, "after": new_text, "verdict": verdict},
        )
        enqueue(
            conn,
            "correction",
            correction_id,
            {
                "result_id": result_id,
                "line_index": line_index,
                "before": before,
                "after": new_text,
                "at": at,
                "by": by,
                "verdict": verdict,
            },
        )

    _write(conn, work)
    return load_result(conn, result_id)


def set_review_state(conn: sqlite3.Connection, result_id: int, state: str, *, by: str) -> ResultDetail:
    """Accept or reject a result. Accepting a corrected result keeps it `corrected` (it was
    reviewed, and its text differs from the reading); the acceptance is still audited and queued."""
    if state not in ("accepted", "rejected"):
        raise ReviewError(f"a reviewer can accept or reject, not {state!r}")

    def work() -> None:
        row = conn.execute("SELECT review_state FROM results WHERE id = ?", (result_id,)).fetchone()
        if row is None:
            raise ReviewError(f"no result {result_id}")
        new_state = "corrected" if state == "accepted" and row[0] == "corrected" else state
        at = utcnow()
        conn.execute(
            "UPDATE results SET review_state = ?, reviewed_at = ?, reviewed_by = ? WHERE id = ?",
            (new_state, at, by, result_id),
        )
        kind = "result.accepted" if state == "accepted" else "result.rejected"
        log_event(conn, kind, f"result {result_id} {state} by {by}", subject=f"result:{result_id}", actor=by)
        enqueue(
            conn,
            "review",
            result_id,
            {"result_id": result_id, "action": state, "review_state": new_state, "at": at, "by": by},
        )

    _write(conn, work)
    return load_result(conn, result_id)
