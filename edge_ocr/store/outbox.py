"""The transactional outbox: rows to ship to the sync endpoint.

`enqueue` must be called inside the same transaction that writes the record it ships, so a
record and its outbox row are committed together or not at all.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from edge_ocr.store.db import utcnow

OUTBOX_KINDS = ("result", "verdict", "correction", "review")


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
