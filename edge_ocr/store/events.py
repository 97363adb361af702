"""The events/audit log."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from edge_ocr.store.db import transaction, utcnow, waits_for_space


def log_event(
    conn: sqlite3.Connection,
    kind: str,
    message: str,
    *,
    level: str = "info",
    subject: str | None = None,
    actor: str | None = None,
    data: dict[str, Any] | None = None,
) -> int:
    """Append an event. Runs in the caller's transaction when one is open."""
    cur = conn.execute(
        "INSERT INTO events (at, level, kind, message, subject, actor, data) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            utcnow(),
            level,
            kind,
            message,
            subject,
            actor,
            json.dumps(data, ensure_ascii=False) if data else None,
        ),
    )
    return int(cur.lastrowid)


@waits_for_space
def record_event(
    conn: sqlite3.Connection,
    kind: str,
    message: str,
    *,
    level: str = "info",
    subject: str | None = None,
    data: dict[str, Any] | None = None,
) -> int:
    """Append an event in a transaction of its own."""
    with transaction(conn):
        return log_event(conn, kind, message, level=level, subject=subject, data=data)
