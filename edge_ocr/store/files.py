"""The per-file state machine of folder sources.

Only the agent's writer thread calls the writing functions.

File states: seen -> processing -> done | failed -> (processing ... ) | quarantined.
A file is keyed by (path, sha256); a different path with content already done is recorded as
done with `duplicate_of` set and is never read twice. An entry that is never read (a link out of
the folder, a link loop, a FIFO) is recorded `quarantined` with an empty sha256.

Names are kept losslessly: `files.path` holds the name as text when it is valid UTF-8, else its
raw bytes (a BLOB). Everything people read (events, errors, captures.source_path, logs) gets the
display form, with each undecodable byte written `\\xNN`.
"""

from __future__ import annotations

import enum
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from edge_ocr.store.db import transaction, utcnow, waits_for_space
from edge_ocr.store.events import log_event
from edge_ocr.store.results import PageOutcome, StoredResult, insert_result


def path_key(path: str | os.PathLike[str]) -> str | bytes:
    """How `files.path` stores a name: its text when valid UTF-8, else its raw bytes."""
    raw = os.fsencode(path)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def display_path(path: str | bytes | os.PathLike) -> str:
    """A name for people: valid UTF-8 as is, each undecodable byte as `\\xNN`."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def clean_text(text: str) -> str:
    """Text that SQLite, JSON and log files accept: stray surrogates (from undecodable names) as `\\xNN`."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace")


class FileState(str, enum.Enum):
    SEEN = "seen"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"
    QUARANTINED = "quarantined"


@dataclass(frozen=True)
class FileRow:
    id: int
    path: str | bytes  # see path_key
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


@waits_for_space
def observe_file(
    conn: sqlite3.Connection,
    source: str,
    path: str | os.PathLike[str],
    sha256: str,
    size: int,
    mtime: float | None,
) -> FileRow:
    """Record a file that is complete on disk and return its row. Content already done under
    another path becomes a `done` row with `duplicate_of` set (no second OCR)."""
    key, shown, source = path_key(path), display_path(path), clean_text(source)
    with transaction(conn):
        row = conn.execute(
            f"SELECT {_FILE_COLS} FROM files WHERE path = ? AND sha256 = ?", (key, sha256)
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
                (source, key, sha256, size, mtime, now, now, now, original[1], original[0]),
            )
            log_event(
                conn,
                "file.duplicate",
                f"{shown} has the same content as file {original[0]}; not read again",
                subject=shown,
                data={"duplicate_of": original[0]},
            )
        else:
            cur = conn.execute(
                "INSERT INTO files (source, path, sha256, size, mtime, state, first_seen_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, 'seen', ?, ?)",
                (source, key, sha256, size, mtime, now, now),
            )
        return get_file(conn, int(cur.lastrowid))  # type: ignore[return-value]


@waits_for_space
def reject_file(conn: sqlite3.Connection, source: str, path: str | os.PathLike[str], reason: str) -> FileRow:
    """Record an entry that is never read (no content hash: sha256 is empty) as quarantined, with
    its reason. Returns the existing row when it was recorded before."""
    key, shown, reason = path_key(path), display_path(path), clean_text(reason)
    with transaction(conn):
        row = conn.execute(
            f"SELECT {_FILE_COLS} FROM files WHERE path = ? AND sha256 = ''", (key,)
        ).fetchone()
        if row is not None:
            return _file_row(row)
        now = utcnow()
        cur = conn.execute(
            "INSERT INTO files (source, path, sha256, size, state, last_error, first_seen_at, updated_at) "
            "VALUES (?, ?, '', 0, 'quarantined', ?, ?, ?)",
            (clean_text(source), key, reason, now, now),
        )
        log_event(conn, "file.quarantined", f"{shown}: {reason}", level="error", subject=shown)
        return get_file(conn, int(cur.lastrowid))  # type: ignore[return-value]


@waits_for_space
def forget_file(
    conn: sqlite3.Connection, file_id: int, reason: str, *, vanished: bool = False
) -> list[str | bytes]:
    """Drop the row of content that is gone or was never complete (the file vanished, changed
    after it was hashed, or was still being written), so a complete file gets a row of its own.
    Rows recorded as its duplicates go too; their paths are returned to be looked at again."""
    with transaction(conn):
        row = conn.execute("SELECT path FROM files WHERE id = ? AND state != 'done'", (file_id,)).fetchone()
        if row is None:
            return []
        dupes = conn.execute("SELECT id, path FROM files WHERE duplicate_of = ?", (file_id,)).fetchall()
        for dupe_id, _ in dupes:
            conn.execute("DELETE FROM files WHERE id = ?", (dupe_id,))
        conn.execute("DELETE FROM files WHERE id = ?", (file_id,))
        shown = display_path(row[0])
        log_event(
            conn, "file.incomplete", f"{shown}: {clean_text(reason)}; read again when complete", subject=shown
        )
        return [p for _, p in dupes]


@waits_for_space
def claim_file(conn: sqlite3.Connection, file_id: int) -> bool:
    """seen/failed -> processing, counting the attempt. False when someone else has it or it is finished."""
    with transaction(conn):
        cur = conn.execute(
            "UPDATE files SET state = 'processing', attempts = attempts + 1, updated_at = ? "
            "WHERE id = ? AND state IN ('seen', 'failed')",
            (utcnow(), file_id),
        )
        return cur.rowcount == 1


@waits_for_space
def release_file(conn: sqlite3.Connection, file_id: int) -> None:
    """Hand a claimed file back (shutdown before it finished): processing -> seen, attempt not counted."""
    with transaction(conn):
        conn.execute(
            "UPDATE files SET state = 'seen', attempts = MAX(attempts - 1, 0), updated_at = ? "
            "WHERE id = ? AND state = 'processing'",
            (utcnow(), file_id),
        )


@waits_for_space
def recover_processing(conn: sqlite3.Connection) -> int:
    """At startup: files left in `processing` by a crash go back to `seen` (their attempt counts)."""
    with transaction(conn):
        cur = conn.execute(
            "UPDATE files SET state = 'seen', updated_at = ? WHERE state = 'processing'", (utcnow(),)
        )
        if cur.rowcount:
            log_event(conn, "agent.recovered", f"{cur.rowcount} file(s) were in processing; retrying them")
        return cur.rowcount


@waits_for_space
def fail_file(conn: sqlite3.Connection, file_id: int, error: str, max_attempts: int) -> FileState:
    """Record a failed attempt: `failed` (to retry) or `quarantined` once attempts are used up."""
    error = clean_text(error)
    with transaction(conn):
        row = conn.execute("SELECT attempts, path FROM files WHERE id = ?", (file_id,)).fetchone()
        if row is None:
            raise KeyError(file_id)
        state = FileState.QUARANTINED if row[0] >= max_attempts else FileState.FAILED
        conn.execute(
            "UPDATE files SET state = ?, last_error = ?, updated_at = ? WHERE id = ?",
            (state.value, error, utcnow(), file_id),
        )
        shown = display_path(row[1])
        log_event(
            conn,
            f"file.{state.value}",
            f"{shown}: {error}",
            level="warning" if state is FileState.FAILED else "error",
            subject=shown,
            data={"attempts": row[0]},
        )
        return state


@waits_for_space
def quarantine_file(conn: sqlite3.Connection, file_id: int, error: str) -> None:
    """Quarantine at once (input that can never be read: empty, truncated, not an image)."""
    error = clean_text(error)
    with transaction(conn):
        row = conn.execute("SELECT path FROM files WHERE id = ?", (file_id,)).fetchone()
        conn.execute(
            "UPDATE files SET state = 'quarantined', last_error = ?, updated_at = ? WHERE id = ?",
            (error, utcnow(), file_id),
        )
        shown = display_path(row[0])
        log_event(conn, "file.quarantined", f"{shown}: {error}", level="error", subject=shown)


def file_state_counts(conn: sqlite3.Connection) -> dict[str, int]:
    counts = {s.value: 0 for s in FileState}
    for state, n in conn.execute("SELECT state, count(*) FROM files GROUP BY state"):
        counts[state] = n
    return counts


@waits_for_space
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
            insert_result(
                conn, p.capture, p.result, model_versions=model_versions, verdict=p.verdict, fields=p.fields
            )
            for p in pages
        ]
        now = utcnow()
        conn.execute(
            "UPDATE files SET state = 'done', done_at = ?, updated_at = ?, last_error = NULL, capture_id = ? "
            "WHERE id = ?",
            (now, now, stored[0].capture_id if stored else None, file_id),
        )
        return stored


class StaleClaimError(RuntimeError):
    """The file changed state under us (internal; never shown to users)."""
