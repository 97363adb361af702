"""The transactional outbox: rows to ship to the sync endpoint.

`enqueue` must be called inside the same transaction that writes the record it ships, so a
record and its outbox row are committed together or not at all.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from edge_ocr.store.db import utcnow

OUTBOX_KINDS = ("result", "verdict", "correction", "review", "field_correction")


def enqueue(conn: sqlite3.Connection, kind: str, ref_id: int, payload: dict[str, Any]) -> int:
    if kind not in OUTBOX_KINDS:
        raise ValueError(f"unknown outbox kind {kind!r}")
    if not conn.in_transaction:
        raise RuntimeError("outbox.enqueue must run inside the transaction that writes the record")
    cur = conn.execute(
        "INSERT INTO outbox (kind, ref_id, created_at, payload) VALUES (?, ?, ?, ?)",
        (kind, ref_id, utcnow(), json.dumps(payload, ensure_ascii=False, separators=(",", ":"))),
    )
    return int(cur.lastrowid)


# --- batches: cut, send, acknowledge -------------------------------------------------------------
#
# A batch is cut in one transaction: its outbox rows get its batch id and `sync_batches` gets a
# row with the exact body that will be sent (so every retry sends the same bytes under the same
# id). Rows are marked acked only when the endpoint acknowledges that batch id and content hash.


@dataclass(frozen=True)
class OutboxRow:
    id: int
    kind: str
    ref_id: int
    created_at: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class PendingBatch:
    batch_id: str
    created_at: str
    n_records: int
    content_sha256: str
    body: bytes | None
    attempts: int


#: builds a batch's body from its rows: (rows, batch_id, created_at) -> (body bytes, content sha256)
Serializer = Callable[[list[OutboxRow], str, str], tuple[bytes, str]]


def _age_s(created_at: str, now: datetime) -> float:
    then = datetime.strptime(created_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return (now - then).total_seconds()


def unbatched_count(conn: sqlite3.Connection) -> int:
    (n,) = conn.execute("SELECT count(*) FROM outbox WHERE batch_id IS NULL").fetchone()
    return int(n)


def cut_batch(
    conn: sqlite3.Connection,
    serialize: Serializer,
    *,
    max_records: int = 500,
    max_age_s: float = 5.0,
    force: bool = False,
    batch_id: str | None = None,
) -> PendingBatch | None:
    """Cut the oldest unbatched rows into a batch when there are `max_records` of them, the
    oldest is `max_age_s` old, or `force`. Returns the batch, or None when nothing is due."""
    if max_records < 1:
        raise ValueError("max_records must be at least 1")
    conn.execute("BEGIN IMMEDIATE")
    try:
        rows = conn.execute(
            "SELECT id, kind, ref_id, created_at, payload FROM outbox WHERE batch_id IS NULL "
            "ORDER BY id LIMIT ?",
            (max_records,),
        ).fetchall()
        due = bool(rows) and (
            force or len(rows) >= max_records or _age_s(rows[0][3], datetime.now(timezone.utc)) >= max_age_s
        )
        if not due:
            conn.execute("ROLLBACK")
            return None
        items = [OutboxRow(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]
        batch_id = batch_id or str(uuid.uuid4())
        created_at = utcnow()
        body, sha = serialize(items, batch_id, created_at)
        conn.execute(
            "INSERT INTO sync_batches (batch_id, created_at, n_records, content_sha256, state, body) "
            "VALUES (?, ?, ?, ?, 'pending', ?)",
            (batch_id, created_at, len(items), sha, body),
        )
        conn.executemany(
            "UPDATE outbox SET batch_id = ? WHERE id = ? AND batch_id IS NULL",
            [(batch_id, r.id) for r in items],
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return PendingBatch(batch_id, created_at, len(items), sha, body, 0)


def pending_batches(conn: sqlite3.Connection, limit: int = 100) -> list[PendingBatch]:
    rows = conn.execute(
        "SELECT batch_id, created_at, n_records, content_sha256, body, attempts FROM sync_batches "
        "WHERE state = 'pending' ORDER BY created_at, rowid LIMIT ?",
        (limit,),
    ).fetchall()
    return [PendingBatch(r[0], r[1], r[2], r[3], None if r[4] is None else bytes(r[4]), r[5]) for r in rows]


def batch_rows(conn: sqlite3.Connection, batch_id: str) -> list[OutboxRow]:
    rows = conn.execute(
        "SELECT id, kind, ref_id, created_at, payload FROM outbox WHERE batch_id = ? ORDER BY id", (batch_id,)
    ).fetchall()
    return [OutboxRow(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]


def record_attempt(conn: sqlite3.Connection, batch_id: str, error: str | None) -> None:
    """Count one send attempt of a batch and its error (None on success)."""
    conn.execute(
        "UPDATE sync_batches SET attempts = attempts + 1, last_attempt_at = ?, last_error = ? WHERE batch_id = ?",
        (utcnow(), error, batch_id),
    )


def ack_batch(conn: sqlite3.Connection, batch_id: str, content_sha256: str) -> int:
    """Mark a batch and its rows acknowledged, if the acknowledged hash is the batch's.
    Idempotent. Returns the number of rows newly acknowledged."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute(
            "SELECT content_sha256, state FROM sync_batches WHERE batch_id = ?", (batch_id,)
        ).fetchone()
        if row is None:
            raise KeyError(f"no batch {batch_id}")
        if row[0] != content_sha256:
            raise ValueError(f"batch {batch_id}: acknowledged hash {content_sha256} is not ours ({row[0]})")
        now = utcnow()
        conn.execute(
            "UPDATE sync_batches SET state = 'acked', acked_at = COALESCE(acked_at, ?), body = NULL, "
            "last_error = NULL WHERE batch_id = ?",
            (now, batch_id),
        )
        cur = conn.execute(
            "UPDATE outbox SET acked_at = ? WHERE batch_id = ? AND acked_at IS NULL", (now, batch_id)
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return cur.rowcount


def release_batch(conn: sqlite3.Connection, batch_id: str) -> int:
    """Forget a pending batch (the endpoint holds different content under its id): its rows go
    back to the queue to be cut again under a new id. Returns the number of rows released."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        cur = conn.execute(
            "UPDATE outbox SET batch_id = NULL WHERE batch_id = ? AND acked_at IS NULL", (batch_id,)
        )
        conn.execute("DELETE FROM sync_batches WHERE batch_id = ? AND state = 'pending'", (batch_id,))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return cur.rowcount


def outbox_stats(conn: sqlite3.Connection) -> dict[str, Any]:
    """Counts for status displays: queued (not yet cut), pending batches and their records, acked."""
    unbatched, oldest = conn.execute(
        "SELECT count(*), min(created_at) FROM outbox WHERE batch_id IS NULL"
    ).fetchone()
    pb, pr, oldest_batch = conn.execute(
        "SELECT count(*), COALESCE(sum(n_records), 0), min(created_at) FROM sync_batches WHERE state = 'pending'"
    ).fetchone()
    (acked,) = conn.execute("SELECT count(*) FROM outbox WHERE acked_at IS NOT NULL").fetchone()
    return {
        "queued_records": int(unbatched),
        "oldest_queued_at": oldest,
        "pending_batches": int(pb),
        "pending_batch_records": int(pr),
        "oldest_pending_batch_at": oldest_batch,
        "acked_records": int(acked),
    }
