"""Captures, results, verdicts, the per-file state machine, agent status and retention.

Only the agent's writer thread calls the writing functions. Every result insert enqueues an
outbox "result" row, and every verdict an outbox "verdict" row, in the same transaction.

File states: seen -> processing -> done | failed -> (processing ... ) | quarantined.
A file is keyed by (path, sha256); a different path with content already done is recorded as
done with `duplicate_of` set and is never read twice.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import socket
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_ocr.store import outbox
from edge_ocr.store.db import utcnow
from edge_ocr.store.events import log_event
from edge_ocr.types import OcrResult


class FileState(str, enum.Enum):
    SEEN = "seen"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"
    QUARANTINED = "quarantined"


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@dataclass(frozen=True)
class FileRow:
    id: int
    path: str
    sha256: str
    state: FileState
    attempts: int
    duplicate_of: int | None
    capture_id: int | None
    last_error: str | None


def _file_row(row: sqlite3.Row | tuple) -> FileRow:
    return FileRow(
        id=row[0],
        path=row[1],
        sha256=row[2],
        state=FileState(row[3]),
        attempts=row[4],
        duplicate_of=row[5],
        capture_id=row[6],
        last_error=row[7],
    )


_FILE_COLS = "id, path, sha256, state, attempts, duplicate_of, capture_id, last_error"


def get_file(conn: sqlite3.Connection, file_id: int) -> FileRow | None:
    row = conn.execute(f"SELECT {_FILE_COLS} FROM files WHERE id = ?", (file_id,)).fetchone()
    return _file_row(row) if row else None


def observe_file(
    conn: sqlite3.Connection, source: str, path: str, sha256: str, size: int, mtime: float | None
) -> FileRow:
    """Record a file that is complete on disk and return its row. Content already done under
    another path becomes a `done` row with `duplicate_of` set (no second OCR)."""
    with transaction(conn):
        row = conn.execute(
            f"SELECT {_FILE_COLS} FROM files WHERE path = ? AND sha256 = ?", (path, sha256)
        ).fetchone()
        if row is not None:
            return _file_row(row)
        now = utcnow()
        original = conn.execute(
            "SELECT id, capture_id FROM files WHERE sha256 = ? AND duplicate_of IS NULL "
            "AND state IN ('done', 'processing') ORDER BY id LIMIT 1",
            (sha256,),
        ).fetchone()
        if original is not None:
            cur = conn.execute(
                "INSERT INTO files (source, path, sha256, size, mtime, state, first_seen_at, updated_at, "
                "done_at, capture_id, duplicate_of) VALUES (?, ?, ?, ?, ?, 'done', ?, ?, ?, ?, ?)",
                (source, path, sha256, size, mtime, now, now, now, original[1], original[0]),
            )
            log_event(
                conn,
                "file.duplicate",
                f"{path} has the same content as file {original[0]}; not read again",
                subject=path,
                data={"duplicate_of": original[0]},
            )
        else:
            cur = conn.execute(
                "INSERT INTO files (source, path, sha256, size, mtime, state, first_seen_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, 'seen', ?, ?)",
                (source, path, sha256, size, mtime, now, now),
            )
        return get_file(conn, int(cur.lastrowid))  # type: ignore[return-value]


def claim_file(conn: sqlite3.Connection, file_id: int) -> bool:
    """seen/failed -> processing, counting the attempt. False when someone else has it or it is finished."""
    with transaction(conn):
        cur = conn.execute(
            "UPDATE files SET state = 'processing', attempts = attempts + 1, updated_at = ? "
            "WHERE id = ? AND state IN ('seen', 'failed')",
            (utcnow(), file_id),
        )
        return cur.rowcount == 1


def release_file(conn: sqlite3.Connection, file_id: int) -> None:
    """Hand a claimed file back (shutdown before it finished): processing -> seen, attempt not counted."""
    with transaction(conn):
        conn.execute(
            "UPDATE files SET state = 'seen', attempts = MAX(attempts - 1, 0), updated_at = ? "
            "WHERE id = ? AND state = 'processing'",
            (utcnow(), file_id),
        )


def recover_processing(conn: sqlite3.Connection) -> int:
    """At startup: files left in `processing` by a crash go back to `seen` (their attempt counts)."""
    with transaction(conn):
        cur = conn.execute(
            "UPDATE files SET state = 'seen', updated_at = ? WHERE state = 'processing'", (utcnow(),)
        )
        if cur.rowcount:
            log_event(conn, "agent.recovered", f"{cur.rowcount} file(s) were in processing; retrying them")
        return cur.rowcount


def fail_file(conn: sqlite3.Connection, file_id: int, error: str, max_attempts: int) -> FileState:
    """Record a failed attempt: `failed` (to retry) or `quarantined` once attempts are used up."""
    with transaction(conn):
        row = conn.execute("SELECT attempts, path FROM files WHERE id = ?", (file_id,)).fetchone()
        if row is None:
            raise KeyError(file_id)
        state = FileState.QUARANTINED if row[0] >= max_attempts else FileState.FAILED
        conn.execute(
            "UPDATE files SET state = ?, last_error = ?, updated_at = ? WHERE id = ?",
            (state.value, error, utcnow(), file_id),
        )
        log_event(
            conn,
            f"file.{state.value}",
            f"{row[1]}: {error}",
            level="warning" if state is FileState.FAILED else "error",
            subject=row[1],
            data={"attempts": row[0]},
        )
        return state


def quarantine_file(conn: sqlite3.Connection, file_id: int, error: str) -> None:
    """Quarantine at once (input that can never be read: empty, truncated, not an image)."""
    with transaction(conn):
        row = conn.execute("SELECT path FROM files WHERE id = ?", (file_id,)).fetchone()
        conn.execute(
            "UPDATE files SET state = 'quarantined', last_error = ?, updated_at = ? WHERE id = ?",
            (error, utcnow(), file_id),
        )
        log_event(conn, "file.quarantined", f"{row[0]}: {error}", level="error", subject=row[0])


def file_state_counts(conn: sqlite3.Connection) -> dict[str, int]:
    counts = {s.value: 0 for s in FileState}
    for state, n in conn.execute("SELECT state, count(*) FROM files GROUP BY state"):
        counts[state] = n
    return counts


# -- captures, results, verdicts -----------------------------------------------------------


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
        "stored_image, station, recipe) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        ),
    )
    return int(cur.lastrowid)


def result_payload(
    result_id: int, capture_id: int, cap: CaptureInfo, result: OcrResult, created_at: str
) -> dict[str, Any]:
    """What the outbox ships for a result."""
    return {
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


def insert_result(
    conn: sqlite3.Connection,
    cap: CaptureInfo,
    result: OcrResult,
    *,
    model_versions: dict[str, str] | None = None,
    verdict: VerdictInfo | None = None,
) -> StoredResult:
    """Insert a capture, its result and optional verdict, with their outbox rows. Must run inside
    the caller's transaction (so a file's `done` transition can share it)."""
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
    outbox.enqueue(conn, "result", result_id, result_payload(result_id, capture_id, cap, result, now))
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


def complete_file(
    conn: sqlite3.Connection,
    file_id: int,
    pages: Sequence[PageOutcome],
    *,
    model_versions: dict[str, str] | None = None,
) -> list[StoredResult]:
    """Store every page's result and move the file processing -> done, in one transaction. Raises
    StaleClaimError when the file is no longer ours (then nothing is written)."""
    with transaction(conn):
        state = conn.execute("SELECT state FROM files WHERE id = ?", (file_id,)).fetchone()
        if state is None or state[0] != FileState.PROCESSING.value:
            raise StaleClaimError(f"file {file_id} is {state[0] if state else 'missing'}, not processing")
        stored = [
            insert_result(conn, p.capture, p.result, model_versions=model_versions, verdict=p.verdict)
            for p in pages
        ]
        now = utcnow()
        conn.execute(
            "UPDATE files SET state = 'done', done_at = ?, updated_at = ?, last_error = NULL, capture_id = ? "
            "WHERE id = ?",
            (now, now, stored[0].capture_id if stored else None, file_id),
        )
        return stored


def store_capture(
    conn: sqlite3.Connection, page: PageOutcome, *, model_versions: dict[str, str] | None = None
) -> StoredResult:
    """Store one capture that does not come from a file (camera records)."""
    with transaction(conn):
        return insert_result(
            conn, page.capture, page.result, model_versions=model_versions, verdict=page.verdict
        )


class StaleClaimError(RuntimeError):
    """The file changed state under us (internal; never shown to users)."""


# -- agent status ----------------------------------------------------------------------------


def write_heartbeat(
    conn: sqlite3.Connection,
    agent_id: str,
    *,
    state: str,
    started_at: str,
    queue_depth: int,
    engine: str | None,
    model: str | None,
    version: str,
    details: dict[str, Any] | None = None,
) -> None:
    with transaction(conn):
        conn.execute(
            "INSERT INTO agent_status (agent_id, pid, host, started_at, heartbeat_at, state, queue_depth, "
            "engine, model, version, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(agent_id) DO UPDATE SET pid = excluded.pid, host = excluded.host, "
            "started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, state = excluded.state, "
            "queue_depth = excluded.queue_depth, engine = excluded.engine, model = excluded.model, "
            "version = excluded.version, details = excluded.details",
            (
                agent_id,
                os.getpid(),
                socket.gethostname(),
                started_at,
                utcnow(),
                state,
                queue_depth,
                engine,
                model,
                version,
                json.dumps(details or {}, sort_keys=True),
            ),
        )


def read_agent_status(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT agent_id, pid, host, started_at, heartbeat_at, state, queue_depth, engine, model, version, "
        "details FROM agent_status ORDER BY heartbeat_at DESC"
    ).fetchall()
    keys = (
        "agent_id",
        "pid",
        "host",
        "started_at",
        "heartbeat_at",
        "state",
        "queue_depth",
        "engine",
        "model",
        "version",
        "details",
    )
    out = []
    for row in rows:
        d = dict(zip(keys, row))
        d["details"] = json.loads(d["details"] or "{}")
        out.append(d)
    return out


# -- retention -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetentionReport:
    results_deleted: int = 0
    images_deleted: int = 0
    bytes_freed: int = 0


def _delete_results(conn: sqlite3.Connection, result_ids: Sequence[int]) -> tuple[int, list[str]]:
    """Delete results with their verdicts, corrections and captures. Returns (count, stored images)."""
    if not result_ids:
        return 0, []
    images: list[str] = []
    for start in range(0, len(result_ids), 500):
        chunk = list(result_ids[start : start + 500])
        marks = ",".join("?" * len(chunk))
        cap_ids = [r[0] for r in conn.execute(f"SELECT capture_id FROM results WHERE id IN ({marks})", chunk)]
        conn.execute(f"DELETE FROM verdicts WHERE result_id IN ({marks})", chunk)
        conn.execute(f"DELETE FROM corrections WHERE result_id IN ({marks})", chunk)
        conn.execute(f"DELETE FROM results WHERE id IN ({marks})", chunk)
        if cap_ids:
            cmarks = ",".join("?" * len(cap_ids))
            images += [
                r[0]
                for r in conn.execute(
                    f"SELECT stored_image FROM captures WHERE id IN ({cmarks}) AND stored_image IS NOT NULL",
                    cap_ids,
                )
            ]
            # keep the files rows (they remember content already read); only drop the link
            conn.execute(f"UPDATE files SET capture_id = NULL WHERE capture_id IN ({cmarks})", cap_ids)
            conn.execute(
                f"DELETE FROM captures WHERE id IN ({cmarks}) AND id NOT IN (SELECT capture_id FROM results)",
                cap_ids,
            )
    return len(result_ids), images


def apply_retention(
    conn: sqlite3.Connection,
    *,
    owned_images_dir: Path,
    max_age_days: float | None = None,
    max_rows: int | None = None,
    max_images_mb: float | None = None,
    protect_unsynced: bool = False,
    now_iso: str | None = None,
) -> RetentionReport:
    """Delete rows older than `max_age_days` or beyond the newest `max_rows`, and the oldest stored
    images beyond `max_images_mb`. Only images under `owned_images_dir` (those the agent saved) are
    ever deleted. With `protect_unsynced`, results whose outbox rows are not acknowledged are kept."""
    from datetime import datetime, timedelta, timezone

    guard = (
        " AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.kind = 'result' AND o.ref_id = r.id "
        "AND o.acked_at IS NULL)"
        if protect_unsynced
        else ""
    )
    doomed: set[int] = set()
    if max_age_days is not None:
        now = datetime.fromisoformat(now_iso.rstrip("Z")) if now_iso else datetime.now(timezone.utc)
        cutoff = (now.replace(tzinfo=None) - timedelta(days=max_age_days)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        doomed |= {
            r[0] for r in conn.execute(f"SELECT r.id FROM results r WHERE r.created_at < ?{guard}", (cutoff,))
        }
    if max_rows is not None:
        doomed |= {
            r[0]
            for r in conn.execute(
                f"SELECT r.id FROM results r WHERE r.id NOT IN "
                f"(SELECT id FROM results ORDER BY id DESC LIMIT ?){guard}",
                (max_rows,),
            )
        }
    owned = owned_images_dir.resolve()
    images: list[str] = []
    with transaction(conn):
        n, images = _delete_results(conn, sorted(doomed))
        if n:
            log_event(conn, "retention.rows", f"retention deleted {n} result(s)", data={"results": n})
    freed = 0
    n_images = 0
    for img in images:
        freed_one = _unlink_owned(Path(img), owned)
        if freed_one is not None:
            freed += freed_one
            n_images += 1
    if max_images_mb is not None and owned.is_dir():
        files = sorted(
            (p for p in owned.rglob("*") if p.is_file() and not p.is_symlink()),
            key=lambda p: p.stat().st_mtime,
        )
        total = sum(p.stat().st_size for p in files)
        limit = max_images_mb * 1024 * 1024
        gone: list[str] = []
        for p in files:
            if total <= limit:
                break
            size = p.stat().st_size
            p.unlink(missing_ok=True)
            total -= size
            freed += size
            n_images += 1
            gone.append(str(p))
        if gone:
            with transaction(conn):
                for start in range(0, len(gone), 500):
                    chunk = gone[start : start + 500]
                    conn.execute(
                        f"UPDATE captures SET stored_image = NULL WHERE stored_image IN ({','.join('?' * len(chunk))})",
                        chunk,
                    )
                log_event(conn, "retention.images", f"retention deleted {len(gone)} stored image(s)")
    return RetentionReport(results_deleted=n, images_deleted=n_images, bytes_freed=freed)


def _unlink_owned(path: Path, owned: Path) -> int | None:
    try:
        resolved = path.resolve()
        if owned not in resolved.parents:
            return None
        size = resolved.stat().st_size
        resolved.unlink()
        return size
    except OSError:
        return None
