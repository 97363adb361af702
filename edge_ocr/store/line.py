"""The production line's jobs and the MQTT messages announcing their results.

A trigger is recorded (`create_job`, state `queued`) before its job id is answered to the PLC; its
result finishes the job (`finish_job`) and adds the job's MQTT messages (`add_messages`) inside the
transaction that stores the result, so a result and its announcement commit together or not at
all. Messages stay until the broker acknowledges them (`ack_messages`): sent in id order, across
broker outages and restarts. Jobs still `queued` at a start were taken by an agent that stopped
before reading them (`orphaned_jobs`): each is finished as an error, so every trigger gets exactly
one result.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from edge_ocr.store.db import transaction, utcnow, waits_for_space

JOB_STATES = ("queued", "done")


@dataclass(frozen=True)
class JobRow:
    job_id: int
    origin: str
    source: str | None
    recipe: str | None
    meas_id: str
    part_id: str
    requested_at: str
    state: str
    verdict: str | None = None
    result_id: int | None = None
    capture_id: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class Message:
    """One MQTT message to publish."""

    topic: str
    payload: str
    qos: int = 1
    retain: bool = False


@dataclass(frozen=True)
class StoredMessage:
    id: int
    job_id: int | None
    topic: str
    payload: str
    qos: int
    retain: bool


_JOB_COLUMNS = (
    "id, origin, source, recipe, meas_id, part_id, requested_at, state, verdict, result_id, capture_id, error"
)


def _job(row: Sequence[object]) -> JobRow:
    return JobRow(*row)  # type: ignore[arg-type]


@waits_for_space
def create_job(
    conn: sqlite3.Connection,
    *,
    origin: str,
    source: str | None,
    recipe: str | None,
    meas_id: str = "",
    part_id: str = "",
    state: str = "queued",
) -> JobRow:
    """Record a job and give it its id (a transaction of its own unless one is open)."""
    now = utcnow()
    with transaction(conn):
        cur = conn.execute(
            "INSERT INTO line_jobs (origin, source, recipe, meas_id, part_id, requested_at, state) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (origin, source, recipe, meas_id, part_id, now, state),
        )
    return JobRow(int(cur.lastrowid), origin, source, recipe, meas_id, part_id, now, state)


def finish_job(
    conn: sqlite3.Connection,
    job_id: int,
    *,
    verdict: str,
    result_id: int | None = None,
    capture_id: int | None = None,
    error: str | None = None,
) -> str:
    """Mark a job done with its verdict; returns the time it finished. Must run inside the
    transaction that stores its result."""
    if not conn.in_transaction:
        raise RuntimeError("line.finish_job must run inside the transaction that stores the result")
    now = utcnow()
    cur = conn.execute(
        "UPDATE line_jobs SET state = 'done', finished_at = ?, verdict = ?, result_id = ?, capture_id = ?, "
        "error = ? WHERE id = ? AND state = 'queued'",
        (now, verdict, result_id, capture_id, error, job_id),
    )
    if cur.rowcount != 1:
        raise RuntimeError(f"line job {job_id} is not queued (already finished, or unknown)")
    return now


def get_job(conn: sqlite3.Connection, job_id: int) -> JobRow | None:
    row = conn.execute(f"SELECT {_JOB_COLUMNS} FROM line_jobs WHERE id = ?", (job_id,)).fetchone()
    return _job(row) if row else None


def orphaned_jobs(conn: sqlite3.Connection) -> list[JobRow]:
    """Jobs a previous agent took and never finished (at start, before any new trigger)."""
    rows = conn.execute(f"SELECT {_JOB_COLUMNS} FROM line_jobs WHERE state = 'queued' ORDER BY id").fetchall()
    return [_job(r) for r in rows]


def add_messages(conn: sqlite3.Connection, job_id: int | None, messages: Iterable[Message]) -> list[int]:
    """Queue messages for the broker; must run inside the transaction that stores what they announce."""
    if not conn.in_transaction:
        raise RuntimeError("line.add_messages must run inside the transaction that stores the result")
    now = utcnow()
    ids = []
    for m in messages:
        cur = conn.execute(
            "INSERT INTO line_messages (job_id, topic, payload, qos, retain, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (job_id, m.topic, m.payload, m.qos, int(m.retain), now),
        )
        ids.append(int(cur.lastrowid))
    return ids


def unacked_messages(conn: sqlite3.Connection, *, after_id: int = 0, limit: int = 500) -> list[StoredMessage]:
    """Messages the broker has not acknowledged, oldest first."""
    rows = conn.execute(
        "SELECT id, job_id, topic, payload, qos, retain FROM line_messages "
        "WHERE acked_at IS NULL AND id > ? ORDER BY id LIMIT ?",
        (after_id, limit),
    ).fetchall()
    return [StoredMessage(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]


@waits_for_space
def ack_messages(conn: sqlite3.Connection, ids: Sequence[int]) -> None:
    """The broker has them (PUBACK/PUBCOMP, or sent for QoS 0)."""
    if not ids:
        return
    now = utcnow()
    with transaction(conn):
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            conn.execute(
                f"UPDATE line_messages SET acked_at = ? WHERE id IN ({marks}) AND acked_at IS NULL",
                [now, *chunk],
            )


def count_unacked(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM line_messages WHERE acked_at IS NULL").fetchone()[0])


@waits_for_space
def prune_acked(conn: sqlite3.Connection, *, older_than_iso: str) -> int:
    """Forget messages the broker acknowledged before `older_than_iso`."""
    with transaction(conn):
        cur = conn.execute(
            "DELETE FROM line_messages WHERE acked_at IS NOT NULL AND acked_at < ?", (older_than_iso,)
        )
    return int(cur.rowcount)


def job_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Jobs per verdict (and queued), for `status`."""
    out = {"queued": 0}
    rows = conn.execute("SELECT state, verdict, count(*) FROM line_jobs GROUP BY state, verdict").fetchall()
    for state, verdict, n in rows:
        key = "queued" if state == "queued" else str(verdict)
        out[key] = out.get(key, 0) + int(n)
    return out


def result_timings(conn: sqlite3.Connection, job_ids: Sequence[int]) -> dict[int, dict[str, float]]:
    """The timings each job's result message carried (the line benchmark reads where time went)."""
    import json

    out: dict[int, dict[str, float]] = {}
    for start in range(0, len(job_ids), 500):
        chunk = list(job_ids[start : start + 500])
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT job_id, payload FROM line_messages WHERE job_id IN ({marks}) AND topic LIKE '%/result'",
            chunk,
        ).fetchall()
        for job_id, payload in rows:
            out[int(job_id)] = json.loads(payload).get("timings_ms", {})
    return out
