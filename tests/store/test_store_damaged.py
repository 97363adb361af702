"""A store with damaged pages that still opens (issue 13 item 7): `edge-ocr results`, `status` and
`export` give one line with doctor's fix and exit 6, never a traceback; no empty reason."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from edge_ocr.store import results
from edge_ocr.store.db import open_connection, sqlite_reason
from edge_ocr.types import OcrResult, TextLine

BOX = ((0.0, 0.0), (10.0, 0.0), (10.0, 5.0), (0.0, 5.0))


@pytest.fixture
def damaged(tmp_path: Path) -> Path:
    """A real store with 400 results whose b-tree pages past the schema are clobbered."""
    db = tmp_path / "edge-ocr.db"
    conn = open_connection(db)
    for i in range(400):
        r = OcrResult(
            (TextLine(f"LOT {i:05d} " * 5, 0.9, BOX),), (100, 50), "fake", "fake/none", {"total": 1.0}
        )
        cap = results.CaptureInfo(source="folder:/in", source_path=f"/in/{i}.png", sha256=f"{i:064d}")
        results.store_capture(conn, results.PageOutcome(cap, r))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(db.read_bytes())
    page = 4096
    for offset in range(20 * page, len(data) - page, 7 * page):
        data[offset + 8 : offset + 400] = b"\xff" * 392
    db.write_bytes(bytes(data))
    return db


@pytest.mark.parametrize(
    "args",
    [["results"], ["results", "--json"], ["status"], ["status", "--json"], ["export", "--format", "jsonl"]],
    ids=" ".join,
)
def test_damaged_store_gives_one_line_with_the_fix(damaged: Path, args: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "edge_ocr.cli", *args, "--db", str(damaged)], capture_output=True, text=True
    )
    assert proc.returncode == 6, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = lines
    assert line.startswith(f"edge-ocr: error: {damaged} is damaged (database disk image is malformed)")
    assert f"mv {damaged} {damaged}.corrupt" in line and "edge-ocr doctor" in line
    assert "()" not in line


def test_an_error_without_a_message_still_has_a_reason() -> None:
    assert sqlite_reason(sqlite3.DatabaseError("")) == "DatabaseError without a message"
    assert sqlite_reason(sqlite3.DatabaseError("file is not a database")) == "file is not a database"
