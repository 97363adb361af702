"""The sync service's own tables: its state for status displays (`sync_state`) and the images it
sends to the endpoint (`sync_uploads`). The outbox and its batches are `outbox.py`'s.

The sync service (`edge_ocr_sync.service`) is the only writer of these tables; `edge-ocr status`,
`edge-ocr sync` and the GUI read them.
"""

from __future__ import annotations

import enum
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_ocr.store.db import utcnow
from edge_ocr.store.outbox import outbox_stats
from edge_ocr.store.query import exact_path

#: what the sync service records about itself (`set_state`); `sync_summary` reads them back
STATE_KEYS = (
    "circuit",
    "consecutive_failures",
    "last_success_at",
    "last_error",
    "last_error_at",
    "next_attempt_at",
    "endpoint",
    "device_id",
)


class UploadState(str, enum.Enum):
    PENDING = "pending"  # to send (again: the last attempt failed and will be retried)
    UPLOADED = "uploaded"
    SKIPPED = "skipped"  # never sent: unreadable, not an image the endpoint takes, or refused


@dataclass(frozen=True)
class ImageToUpload:
    capture_id: int
    sha256: str | None  # the capture's content hash (None for camera records)
    stored_image: str  # where the image is kept on this station (its display form)
    stored_image_raw: bytes | None = None  # the exact bytes of that name (migration 3)

    @property
    def path(self) -> Path:
        """The image's exact name: two names that show the same never meet."""
        return exact_path(self.stored_image_raw, self.stored_image) or Path(self.stored_image)


def set_state(conn: sqlite3.Connection, **values: Any) -> None:
    """Record the sync service's state (`STATE_KEYS`); None clears a value."""
    unknown = sorted(set(values) - set(STATE_KEYS))
    if unknown:
        raise ValueError(f"unknown sync state key(s) {', '.join(unknown)}; known: {', '.join(STATE_KEYS)}")
    conn.executemany(
        "INSERT INTO sync_state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [(k, None if v is None else str(v)) for k, v in values.items()],
    )


def images_to_upload(conn: sqlite3.Connection, limit: int) -> list[ImageToUpload]:
    """Images of shipped results that are kept on this station and not uploaded yet (never tried,
    or still pending), oldest capture first."""
    rows = conn.execute(
        "SELECT DISTINCT c.id, c.sha256, c.stored_image, c.stored_image_raw FROM outbox o "
        "JOIN results r ON o.kind = 'result' AND r.id = o.ref_id "
        "JOIN captures c ON c.id = r.capture_id "
        "LEFT JOIN sync_uploads u ON u.capture_id = c.id "
        "WHERE c.stored_image IS NOT NULL AND (u.capture_id IS NULL OR u.state = ?) "
        "ORDER BY c.id LIMIT ?",
        (UploadState.PENDING.value, limit),
    ).fetchall()
    return [ImageToUpload(int(r[0]), r[1], r[2], r[3]) for r in rows]


def record_upload(
    conn: sqlite3.Connection,
    capture_id: int,
    sha256: str,
    state: UploadState,
    *,
    object_key: str | None = None,
    error: str | None = None,
) -> None:
    """One upload attempt of a capture's image: its outcome, counted (an object key once known is kept)."""
    conn.execute(
        "INSERT INTO sync_uploads (capture_id, sha256, object_key, state, attempts, last_error, updated_at) "
        "VALUES (?, ?, ?, ?, 1, ?, ?) ON CONFLICT(capture_id) DO UPDATE SET sha256 = excluded.sha256, "
        "object_key = COALESCE(excluded.object_key, object_key), state = excluded.state, "
        "attempts = attempts + 1, last_error = excluded.last_error, updated_at = excluded.updated_at",
        (capture_id, sha256, object_key, UploadState(state).value, error, utcnow()),
    )


def pending_uploads(conn: sqlite3.Connection) -> int:
    (n,) = conn.execute(
        "SELECT count(*) FROM sync_uploads WHERE state = ?", (UploadState.PENDING.value,)
    ).fetchone()
    return int(n)


def sync_summary(conn: sqlite3.Connection) -> dict[str, Any]:
    """Outbox counts plus the sync service's last success/error and circuit (for status displays)."""
    state = dict(conn.execute("SELECT key, value FROM sync_state").fetchall())
    return {
        **outbox_stats(conn),
        "circuit": state.get("circuit") or "closed",
        "consecutive_failures": int(state.get("consecutive_failures") or 0),
        "last_success_at": state.get("last_success_at"),
        "last_error": state.get("last_error"),
        "last_error_at": state.get("last_error_at"),
        "next_attempt_at": state.get("next_attempt_at"),
        "endpoint": state.get("endpoint"),
        "device_id": state.get("device_id"),
    }


def sync_status(conn: sqlite3.Connection) -> dict[str, Any]:
    """`sync_summary` with the records not yet acknowledged in all and the images still to send
    (`edge-ocr sync`)."""
    summary = sync_summary(conn)
    return {
        **summary,
        "pending_records": summary["queued_records"] + summary["pending_batch_records"],
        "uploads_pending": pending_uploads(conn),
    }
