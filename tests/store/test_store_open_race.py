"""A new store opened by several connections at once (the agent and its sync service start
together): switching it to WAL answers "locked" without SQLite's busy handler, which killed the
agent at start now and then. Every opener must get its connection."""

from __future__ import annotations

import threading
from pathlib import Path

from edge_ocr.store.db import open_connection, schema_version
from edge_ocr.store.migrations import LATEST_VERSION


def test_a_new_store_opened_by_three_connections_at_once(tmp_path: Path) -> None:
    errors: list[str] = []
    for i in range(40):
        db = tmp_path / f"s{i}.db"
        barrier = threading.Barrier(3)

        def open_it(db: Path = db, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                open_connection(db).close()
            except Exception as exc:  # collected: the test names what failed
                errors.append(repr(exc))

        threads = [threading.Thread(target=open_it) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        conn = open_connection(db, readonly=True)
        try:
            assert schema_version(conn) == LATEST_VERSION
        finally:
            conn.close()
    assert errors == []
