"""Captures, results and verdicts.

Only the agent's writer thread calls the writing functions. Every result insert enqueues an
outbox "result" row, and every verdict an outbox "verdict" row, in the same transaction.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edge_ocr.fields import ReceiptFields
from edge_ocr.store import outbox
from edge_ocr.store.db import transaction, utcnow, waits_for_space
from edge_ocr.store.fields import insert_fields
from edge_ocr.types import OcrResult


@dataclass(frozen=True)
class CaptureInfo:
    source: str
    source_path: str | None
    page: int = 1
    sha256: str | None = None
    size: int | None = None
    width: int | None = None
    height: int | None = None
    stored_image: str | None = None
    station: str | None = None
    recipe: str | None = None
    source_path_raw: bytes | None = None  # the exact bytes of the name (source_path: its display form)
    stored_image_raw: bytes | None = None  # the exact bytes of stored_image


@dataclass(frozen=True)
class VerdictInfo:
    status: str  # pass, fail, unreadable
    reasons: tuple[str, ...]
    fields: dict[str, Any]
    recipe: str | None = None


@dataclass(frozen=True)
class StoredResult:
    capture_id: int
    result_id: int
    verdict_id: int | None


def _insert_capture(conn: sqlite3.Connection, cap: CaptureInfo, captured_at: str) -> int:
    cur = conn.execute(
        "INSERT INTO captures (source, source_path, page, sha256, size, width, height, captured_at, "
        "stored_image, station, recipe, source_path_raw, stored_image_raw) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            cap.source,
            cap.source_path,
            cap.page,
            cap.sha256,
            cap.size,
            cap.width,
            cap.height,
            captured_at,
            cap.stored_image,
            cap.station,
            cap.recipe,
            cap.source_path_raw,
            cap.stored_image_raw,
        ),
    )
    return int(cur.lastrowid)


def result_payload(
    result_id: int,
    capture_id: int,
    cap: CaptureInfo,
    result: OcrResult,
    created_at: str,
    fields: ReceiptFields | None = None,
) -> dict[str, Any]:
    """What the outbox ships for a result (with `fields`, `fields_kind` and `fields_missing` when the
    page's fields were read)."""
    out = {
        "result_id": result_id,
        "capture_id": capture_id,
        "created_at": created_at,
        "source": cap.source,
        "source_path": cap.source_path,
        "page": cap.page,
        "sha256": cap.sha256,
        "station": cap.station,
        "recipe": cap.recipe,
        "engine": result.engine,
        "model": result.model,
        "text": result.text,
        "confidence": round(result.confidence, 6),
        "lines": [line.to_dict() for line in result.lines],
        "timings_ms": {k: round(v, 3) for k, v in result.timings_ms.items()},
    }
    if fields is not None:
        out["fields_kind"] = fields.kind.value
        out.update(fields.contract())
    return out


def insert_result(
    conn: sqlite3.Connection,
    cap: CaptureInfo,
    result: OcrResult,
    *,
    model_versions: dict[str, str] | None = None,
    verdict: VerdictInfo | None = None,
    fields: ReceiptFields | None = None,
) -> StoredResult:
    """Insert a capture, its result, its fields and optional verdict, with their outbox rows. Must
    run inside the caller's transaction (so a file's `done` transition can share it)."""
    if not conn.in_transaction:
        raise RuntimeError("insert_result must run inside a transaction")
    now = utcnow()
    capture_id = _insert_capture(conn, cap, now)
    cur = conn.execute(
        "INSERT INTO results (capture_id, created_at, engine, model, model_versions, text, confidence, "
        "n_lines, lines, timings, recipe, verdict) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            capture_id,
            now,
            result.engine,
            result.model,
            json.dumps(model_versions or {}, sort_keys=True),
            result.text,
            float(result.confidence),
            len(result.lines),
            json.dumps([line.to_dict() for line in result.lines], ensure_ascii=False),
            json.dumps({k: round(v, 3) for k, v in result.timings_ms.items()}),
            cap.recipe,
            verdict.status if verdict else None,
        ),
    )
    result_id = int(cur.lastrowid)
    if fields is not None:
        insert_fields(conn, result_id, fields.kind.value, fields)
    outbox.enqueue(conn, "result", result_id, result_payload(result_id, capture_id, cap, result, now, fields))
    verdict_id = None
    if verdict is not None:
        verdict_id = insert_verdict(conn, result_id, verdict, created_at=now)
    return StoredResult(capture_id=capture_id, result_id=result_id, verdict_id=verdict_id)


def insert_verdict(
    conn: sqlite3.Connection, result_id: int, verdict: VerdictInfo, *, created_at: str | None = None
) -> int:
    """Insert a verdict (and its outbox row) and make it the result's latest. Inside a transaction."""
    if not conn.in_transaction:
        raise RuntimeError("insert_verdict must run inside a transaction")
    now = created_at or utcnow()
    cur = conn.execute(
        "INSERT INTO verdicts (result_id, created_at, recipe, status, reasons, fields) VALUES (?, ?, ?, ?, ?, ?)",
        (
            result_id,
            now,
            verdict.recipe,
            verdict.status,
            json.dumps(list(verdict.reasons), ensure_ascii=False),
            json.dumps(verdict.fields, ensure_ascii=False, sort_keys=True),
        ),
    )
    verdict_id = int(cur.lastrowid)
    conn.execute("UPDATE results SET verdict = ? WHERE id = ?", (verdict.status, result_id))
    outbox.enqueue(conn, "verdict", verdict_id, verdict_payload(verdict_id, result_id, verdict, now))
    return verdict_id


def verdict_payload(verdict_id: int, result_id: int, verdict: VerdictInfo, created_at: str) -> dict[str, Any]:
    return {
        "verdict_id": verdict_id,
        "result_id": result_id,
        "created_at": created_at,
        "recipe": verdict.recipe,
        "status": verdict.status,
        "reasons": list(verdict.reasons),
        "fields": verdict.fields,
    }


@dataclass(frozen=True)
class PageOutcome:
    """One page's OCR result and verdict, ready to store."""

    capture: CaptureInfo
    result: OcrResult
    verdict: VerdictInfo | None = None
    fields: ReceiptFields | None = None


@waits_for_space
def store_capture(
    conn: sqlite3.Connection, page: PageOutcome, *, model_versions: dict[str, str] | None = None
) -> StoredResult:
    """Store one capture that does not come from a file (camera records)."""
    with transaction(conn):
        return insert_result(
            conn,
            page.capture,
            page.result,
            model_versions=model_versions,
            verdict=page.verdict,
            fields=page.fields,
        )


@waits_for_space
def set_stored_image(conn: sqlite3.Connection, capture_ids: Sequence[int], image: bytes | None) -> None:
    """Where the captures' image now is (archived: the exact bytes of its new path; deleted: None),
    kept with its display form."""
    if not capture_ids:
        return
    shown = image.decode("utf-8", "backslashreplace") if image is not None else None
    with transaction(conn):
        marks = ",".join("?" * len(capture_ids))
        conn.execute(
            f"UPDATE captures SET stored_image = ?, stored_image_raw = ? WHERE id IN ({marks})",
            (shown, image, *capture_ids),
        )
