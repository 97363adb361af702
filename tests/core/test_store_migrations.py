"""Schema migrations: order, backups, newer schemas, late-added lower numbers."""

from __future__ import annotations

import sqlite3

import pytest

from edge_ocr.errors import SchemaTooNewError, StoreError
from edge_ocr.store import db as store_db
from edge_ocr.store.migrations import LATEST_VERSION, MIGRATIONS, Migration


def test_fresh_database_gets_every_migration_in_wal(tmp_path):
    conn = store_db.open_connection(tmp_path / "a.db")
    assert store_db.applied_versions(conn) == {m.version for m in MIGRATIONS}
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_a_lower_numbered_migration_added_later_still_runs_after_a_backup(tmp_path, monkeypatch):
    path = tmp_path / "b.db"
    store_db.open_connection(path).close()
    late = Migration(
        LATEST_VERSION - 1 if LATEST_VERSION > 2 else 2, "late", sql="CREATE TABLE late_table (x);"
    )
    if late.version in {m.version for m in MIGRATIONS}:
        late = Migration(max(m.version for m in MIGRATIONS) + 1, "late", sql="CREATE TABLE late_table (x);")
    monkeypatch.setattr(store_db, "MIGRATIONS", (*MIGRATIONS, late))
    conn = store_db.open_connection(path)
    assert late.version in store_db.applied_versions(conn)
    conn.execute("SELECT * FROM late_table").fetchall()
    conn.close()
    assert list(tmp_path.glob("b.db.v*.bak")), "no backup was taken before migrating"


def test_failed_migration_rolls_back(tmp_path, monkeypatch):
    path = tmp_path / "c.db"
    store_db.open_connection(path).close()
    bad = Migration(999, "bad", sql="CREATE TABLE half_done (x); INSERT INTO no_such_table VALUES (1);")
    monkeypatch.setattr(store_db, "MIGRATIONS", (*MIGRATIONS, bad))
    with pytest.raises((sqlite3.OperationalError, StoreError)):
        store_db.open_connection(path)
    monkeypatch.undo()
    conn = store_db.open_connection(path)
    assert conn.execute("SELECT name FROM sqlite_master WHERE name='half_done'").fetchone() is None
    assert 999 not in store_db.applied_versions(conn)
    conn.close()


def test_newer_schema_is_refused_with_advice(tmp_path):
    path = tmp_path / "d.db"
    conn = store_db.open_connection(path)
    conn.execute("INSERT INTO schema_migrations VALUES (?, 'future', 'x')", (LATEST_VERSION + 50,))
    conn.close()
    with pytest.raises(SchemaTooNewError, match="upgrade edge-ocr"):
        store_db.open_connection(path)


def test_corrupt_and_missing_files(tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a readable SQLite database|corrupt"):
        store_db.open_connection(bad)
    with pytest.raises(StoreError, match="no database"):
        store_db.open_connection(tmp_path / "none.db", readonly=True)


def test_processes_opening_a_new_database_at_once_all_succeed(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "race.db"
    code = (
        f"from edge_ocr.store.db import open_connection; open_connection({str(path)!r}).close(); print('ok')"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(6)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-500:] for _, err in results]
    conn = store_db.open_connection(path)
    assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(MIGRATIONS)
    conn.close()


def test_migration_3_keeps_the_exact_bytes_of_names_recovering_old_ones_from_files(tmp_path, monkeypatch):
    path = tmp_path / "old.db"
    monkeypatch.setattr(store_db, "MIGRATIONS", tuple(m for m in MIGRATIONS if m.version != 3))
    conn = store_db.open_connection(path)
    raw, literal = b"/in/lot\xff.png", "/in/lot\\xfe.png"  # a name that is not UTF-8; one with a backslash
    for key, sha in ((raw, "a" * 64), (literal, "b" * 64), ("/in/plain.png", "c" * 64)):
        conn.execute(
            "INSERT INTO files (source, path, sha256, size, state, first_seen_at, updated_at) "
            "VALUES ('folder:/in', ?, ?, 1, 'done', 't', 't')",
            (key, sha),
        )
    for shown, sha in (("/in/lot\\xff.png", "a" * 64), (literal, "b" * 64), ("/in/plain.png", "c" * 64)):
        conn.execute(
            "INSERT INTO captures (source, source_path, sha256, captured_at, stored_image) "
            "VALUES ('folder:/in', ?, ?, 't', ?)",
            (shown, sha, shown),
        )
    conn.close()
    monkeypatch.setattr(store_db, "MIGRATIONS", MIGRATIONS)
    conn = store_db.open_connection(path)
    got = conn.execute("SELECT source_path_raw, stored_image_raw FROM captures ORDER BY id").fetchall()
    conn.close()
    assert got == [(raw, raw), (literal.encode(), literal.encode()), (b"/in/plain.png", b"/in/plain.png")]
