"""The full-text index as Datasette sees it: migration 2 re-declares `results_fts` so that
Datasette's search box (`?_search=`) filters `results`, and the review search keeps working."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path
from urllib.parse import urlencode

import pytest
import sqlite_utils
from datasette.app import Datasette

from edge_ocr.store import db as dbmod
from edge_ocr.store import review
from edge_ocr.store.db import open_connection, schema_version
from edge_ocr.store.demo import build_demo_store
from edge_ocr.store.migrations import MIGRATIONS
from edge_ocr.store.review import ResultFilter

ROWS = 300


def datasette_search(db: Path, search: str) -> tuple[bool, set[int]]:
    """Datasette's own answer to `/<db>/results.json?_search=...`: whether it offers search on
    `results`, and the ids of the rows it returns."""

    async def ask() -> tuple[bool, set[int]]:
        ds = Datasette([str(db)], settings={"num_sql_threads": 0})  # in this thread: nothing to leak
        try:
            await ds.invoke_startup()
            query = urlencode({"_search": search, "_col": "id", "_size": "max", "_shape": "objects"})
            response = await ds.client.get(f"/{db.stem}/results.json?{query}")
            assert response.status_code == 200, response.text
            page = await ds.client.get(f"/{db.stem}/results")
            assert page.status_code == 200
            body = response.json()
            assert body["next"] is None, "more rows than one page"
            return 'name="_search"' in page.text, {row["id"] for row in body["rows"]}
        finally:
            for database in ds.databases.values():
                database.close()

    return asyncio.run(ask())


def token_matches(db: Path, word: str) -> set[int]:
    """Ids whose text or corrected text holds `word` as a whole token (FTS5 unicode61: case-blind)."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT id, text, COALESCE(corrected_text, '') FROM results").fetchall()
    finally:
        conn.close()
    word = word.lower()
    return {
        rid for rid, text, corrected in rows if word in re.findall(r"[^\W_]+", f"{text} {corrected}".lower())
    }


@pytest.fixture
def v10_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A store as released before migration 2 (schema version 10), holding demo results."""
    old = tuple(m for m in MIGRATIONS if m.version in (1, 10))  # what was released then
    monkeypatch.setattr(dbmod, "MIGRATIONS", old)
    monkeypatch.setattr(dbmod, "LATEST_VERSION", max(m.version for m in old))
    db = tmp_path / "station.db"
    build_demo_store(db, ROWS, seed=7, pool_size=2, days=1)
    monkeypatch.undo()
    conn = sqlite3.connect(db)
    try:
        assert schema_version(conn) == 10
        sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'results_fts'").fetchone()[0]
        assert "content='results'" in sql
    finally:
        conn.close()
    return db


def test_datasette_search_filters_results_after_the_migration(v10_store: Path) -> None:
    word = "LOT"
    expected = token_matches(v10_store, word)
    assert 0 < len(expected) < ROWS

    offered, ids = datasette_search(v10_store, word)
    assert not offered and len(ids) == ROWS  # the bug: the search box was ignored

    conn = open_connection(v10_store)  # migrates, after a backup
    try:
        assert schema_version(conn) == max(m.version for m in MIGRATIONS)
        assert sqlite_utils.Database(conn)["results"].detect_fts() == "results_fts"
    finally:
        conn.close()
    before = 10  # the version the released store had
    assert list(v10_store.parent.glob(f"{v10_store.name}.v{before}.*.bak"))

    offered, ids = datasette_search(v10_store, word)
    assert offered
    assert ids == expected


def test_review_search_and_triggers_after_the_migration(v10_store: Path) -> None:
    conn = open_connection(v10_store)
    try:
        # the index was rebuilt from the results: the review search finds what it found before
        hits = {r.id for r in review.fetch_page(conn, ResultFilter(search="LOT"), limit=ROWS)}
        assert token_matches(v10_store, "LOT") <= hits
        assert review.count_results(conn, ResultFilter(search="LOT")) == len(hits)

        # inserts, updates and deletes keep it in step
        (rid,) = conn.execute("SELECT id FROM results ORDER BY id LIMIT 1").fetchone()
        conn.execute("UPDATE results SET corrected_text = 'quokka 42' WHERE id = ?", (rid,))
        assert [r.id for r in review.fetch_page(conn, ResultFilter(search="quokka"))] == [rid]
        conn.execute(
            "INSERT INTO results (capture_id, created_at, engine, model, text, confidence, n_lines, lines) "
            "SELECT capture_id, created_at, engine, model, 'wombat 7', confidence, 1, '[]' FROM results WHERE id = ?",
            (rid,),
        )
        new_id = conn.execute("SELECT max(id) FROM results").fetchone()[0]
        assert [r.id for r in review.fetch_page(conn, ResultFilter(search="wombat"))] == [new_id]
        conn.execute("DELETE FROM results WHERE id = ?", (new_id,))
        assert review.count_results(conn, ResultFilter(search="wombat")) == 0
        conn.execute(
            "INSERT INTO results_fts(results_fts) VALUES ('integrity-check')"
        )  # raises if out of step
    finally:
        conn.close()

    assert datasette_search(v10_store, "quokka") == (True, {rid})


def test_a_new_store_is_searchable_in_datasette(tmp_path: Path) -> None:
    db = tmp_path / "fresh.db"
    build_demo_store(db, 60, seed=11, pool_size=2, days=1)
    expected = token_matches(db, "LOT")
    assert expected
    assert datasette_search(db, "LOT") == (True, expected)
