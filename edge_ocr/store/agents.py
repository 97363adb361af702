"""Agent status: one heartbeat row per agent, read by `edge-ocr status` and the GUI."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from pathlib import Path
from typing import Any

from edge_ocr.store.db import transaction, utcnow, waits_for_space


@waits_for_space
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


# -- waiting for the write lock ----------------------------------------------------------------
# While another process holds the database's write lock, the agent cannot write its heartbeat.
# It says so in a small JSON file beside the database instead, which `edge-ocr status` reads.


def lock_wait_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".lock-wait.json")


def write_lock_wait(db_path: Path, info: dict[str, Any]) -> None:
    target = lock_wait_path(db_path)
    tmp = target.with_name(target.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(info, sort_keys=True), encoding="utf-8")
    tmp.replace(target)


def clear_lock_wait(db_path: Path) -> None:
    lock_wait_path(db_path).unlink(missing_ok=True)


def read_lock_wait(db_path: Path) -> dict[str, Any] | None:
    """What a waiting agent wrote, or None (no file, or unreadable)."""
    try:
        return json.loads(lock_wait_path(db_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
