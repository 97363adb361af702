"""The file state machine, result/verdict inserts with their outbox rows, queries, retention. Real SQLite files."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from edge_ocr.store import agents, files, results, retention
from edge_ocr.store.db import open_connection
from edge_ocr.store.query import iter_results, parse_since
from edge_ocr.types import OcrResult, TextLine

BOX = ((0.0, 0.0), (10.0, 0.0), (10.0, 5.0), (0.0, 5.0))


@pytest.fixture
def conn(tmp_path: Path):
    c = open_connection(tmp_path / "s.db")
    yield c
    c.close()


def ocr(*texts: str) -> OcrResult:
    return OcrResult(
        tuple(TextLine(t, 0.9, BOX) for t in texts), (100, 50), "fake", "fake/none", {"total": 1.0}
    )


def page(path: str, *texts: str, verdict: results.VerdictInfo | None = None) -> results.PageOutcome:
    cap = results.CaptureInfo(source="folder:/in", source_path=path, sha256="a" * 64, width=100, height=50)
    return results.PageOutcome(cap, ocr(*texts), verdict)


def test_state_machine_and_one_transaction(conn: sqlite3.Connection) -> None:
    row = files.observe_file(conn, "folder:/in", "/in/a.png", "a" * 64, 10, 1.0)
    assert row.state is files.FileState.SEEN
    assert files.observe_file(conn, "folder:/in", "/in/a.png", "a" * 64, 10, 1.0).id == row.id
    assert files.claim_file(conn, row.id)
    assert not files.claim_file(conn, row.id)  # already processing
    verdict = results.VerdictInfo("pass", (), {"lot": {"value": "1"}}, "r")
    stored = files.complete_file(conn, row.id, [page("/in/a.png", "LOT 1", verdict=verdict)])
    assert files.get_file(conn, row.id).state is files.FileState.DONE  # type: ignore[union-attr]
    kinds = conn.execute("SELECT kind, ref_id FROM outbox ORDER BY id").fetchall()
    assert kinds == [("result", stored[0].result_id), ("verdict", stored[0].verdict_id)]
    payload = json.loads(conn.execute("SELECT payload FROM outbox WHERE kind='result'").fetchone()[0])
    assert payload["text"] == "LOT 1" and payload["lines"][0]["box"][1] == [10.0, 0.0]
    assert conn.execute("SELECT verdict FROM results").fetchone() == ("pass",)
    with pytest.raises(files.StaleClaimError):  # a second completion writes nothing
        files.complete_file(conn, row.id, [page("/in/a.png", "LOT 1")])
    assert conn.execute("SELECT count(*) FROM results").fetchone() == (1,)


def test_failed_insert_rolls_back_everything(conn: sqlite3.Connection) -> None:
    row = files.observe_file(conn, "folder:/in", "/in/a.png", "a" * 64, 10, 1.0)
    files.claim_file(conn, row.id)
    bad = results.VerdictInfo("maybe", (), {})  # violates the CHECK constraint after the result insert
    with pytest.raises(sqlite3.IntegrityError):
        files.complete_file(conn, row.id, [page("/in/a.png", "x", verdict=bad)])
    assert conn.execute("SELECT count(*) FROM results").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM outbox").fetchone() == (0,)
    assert files.get_file(conn, row.id).state is files.FileState.PROCESSING  # type: ignore[union-attr]


def test_renamed_copy_is_a_duplicate(conn: sqlite3.Connection) -> None:
    row = files.observe_file(conn, "folder:/in", "/in/a.png", "b" * 64, 10, 1.0)
    files.claim_file(conn, row.id)
    stored = files.complete_file(conn, row.id, [page("/in/a.png", "x")])
    dup = files.observe_file(conn, "folder:/in", "/in/renamed.png", "b" * 64, 10, 2.0)
    assert dup.state is files.FileState.DONE
    assert dup.duplicate_of == row.id and dup.capture_id == stored[0].capture_id
    assert not files.claim_file(conn, dup.id)


def test_retries_then_quarantine_and_recovery(conn: sqlite3.Connection) -> None:
    row = files.observe_file(conn, "folder:/in", "/in/c.png", "c" * 64, 10, 1.0)
    for attempt in range(1, 4):
        assert files.claim_file(conn, row.id)
        state = files.fail_file(conn, row.id, f"boom {attempt}", max_attempts=3)
        assert state is (files.FileState.QUARANTINED if attempt == 3 else files.FileState.FAILED)
    assert files.get_file(conn, row.id).last_error == "boom 3"  # type: ignore[union-attr]
    other = files.observe_file(conn, "folder:/in", "/in/d.png", "d" * 64, 10, 1.0)
    files.claim_file(conn, other.id)
    assert files.recover_processing(conn) == 1  # as after a crash
    assert files.get_file(conn, other.id).state is files.FileState.SEEN  # type: ignore[union-attr]
    assert files.claim_file(conn, other.id)
    files.release_file(conn, other.id)  # handed back at shutdown: the attempt does not count
    assert files.get_file(conn, other.id).attempts == 1  # type: ignore[union-attr]
    counts = files.file_state_counts(conn)
    assert counts["quarantined"] == 1 and counts["seen"] == 1
    kinds = [k for (k,) in conn.execute("SELECT kind FROM events ORDER BY id")]
    assert kinds.count("file.failed") == 2 and "file.quarantined" in kinds and "agent.recovered" in kinds


def test_search_filters_and_contract(conn: sqlite3.Connection) -> None:
    results.store_capture(conn, page("/in/1.png", "BATCH D89F3842", "EXP 11/2027"))
    results.store_capture(conn, page("/in/2.png", "LOT 7"), model_versions={"onnxruntime": "1"})
    conn.execute("UPDATE results SET corrected_text = 'LOT 8' WHERE id = 2")
    assert [r.result_id for r in iter_results(conn, search="d89f")] == [1]
    assert [r.result_id for r in iter_results(conn, search="LOT 8")] == [2]  # corrected text is indexed
    assert [r.result_id for r in iter_results(conn, search='EXP" (')] == [1]  # user input cannot break FTS
    assert [r.result_id for r in iter_results(conn, verdict="none")] == [1, 2]
    assert list(iter_results(conn, since=parse_since("1d"))) and not list(iter_results(conn, since="2999"))
    c = next(iter_results(conn)).to_contract()
    assert c["image"] == "/in/1.png" and c["status"] == "success"
    assert c["data"]["text"] == "BATCH D89F3842\nEXP 11/2027"
    assert {"result_id", "capture_id", "verdict", "review_state", "engine", "model", "timestamp"} <= set(c)


def test_retention_by_rows_age_and_image_size(conn: sqlite3.Connection, tmp_path: Path) -> None:
    owned = tmp_path / "captures"
    owned.mkdir()
    kept_elsewhere = tmp_path / "user.png"
    kept_elsewhere.write_bytes(b"x")
    for i in range(5):
        img = owned / f"{i}.jpg"
        img.write_bytes(b"\0" * 400_000)
        os.utime(img, (1000 + i, 1000 + i))
        cap = results.CaptureInfo(source="camera:c", source_path=str(img), stored_image=str(img))
        results.store_capture(conn, results.PageOutcome(cap, ocr(f"t{i}")))
    cap = results.CaptureInfo(
        source="folder:/in", source_path=str(kept_elsewhere), stored_image=str(kept_elsewhere)
    )
    results.store_capture(conn, results.PageOutcome(cap, ocr("user")))
    report = retention.apply_retention(conn, owned_images_dir=owned, max_rows=4)
    assert report.results_deleted == 2 and report.images_deleted == 2
    assert sorted(p.name for p in owned.iterdir()) == ["2.jpg", "3.jpg", "4.jpg"]
    report = retention.apply_retention(conn, owned_images_dir=owned, max_images_mb=0.5)
    assert sorted(p.name for p in owned.iterdir()) == ["4.jpg"]
    assert conn.execute("SELECT count(*) FROM captures WHERE stored_image IS NULL").fetchone() == (2,)
    retention.apply_retention(
        conn, owned_images_dir=owned, max_age_days=1, now_iso="2999-01-01T00:00:00.000Z"
    )
    assert conn.execute("SELECT count(*) FROM results").fetchone() == (0,)
    assert kept_elsewhere.exists()  # never deletes what the agent did not store
    assert conn.execute("SELECT count(*) FROM results_fts WHERE results_fts MATCH 'user'").fetchone() == (0,)


def test_retention_keeps_unsynced_when_asked(conn: sqlite3.Connection, tmp_path: Path) -> None:
    results.store_capture(conn, page("/in/1.png", "a"))
    results.store_capture(conn, page("/in/2.png", "b"))
    conn.execute("UPDATE outbox SET acked_at = '2026-01-01T00:00:00.000Z' WHERE ref_id = 1")
    report = retention.apply_retention(conn, owned_images_dir=tmp_path, max_rows=0, protect_unsynced=True)
    assert report.results_deleted == 1
    assert [r.result_id for r in iter_results(conn)] == [2]


def test_heartbeat_roundtrip(conn: sqlite3.Connection) -> None:
    for state in ("starting", "running"):
        agents.write_heartbeat(
            conn, "host1", state=state, started_at="t", queue_depth=3, engine="fake", model="m", version="0",
            details={"workers": 2},
        )  # fmt: skip
    [row] = agents.read_agent_status(conn)
    assert row["state"] == "running" and row["queue_depth"] == 3 and row["details"] == {"workers": 2}
