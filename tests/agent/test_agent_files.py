"""The agent on real temp folders and a real SQLite file, with the fake engine in worker processes."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from support import make_config, query, running_agent, wait_for, write_label

from edge_ocr.agent.app import Agent
from edge_ocr.agent.workers import ENV_CRASH_MARK
from edge_ocr.cli import main
from edge_ocr.config import AfterSuccess, ChecksSpec, FieldSpec, OutputsConfig, RecipeConfig
from edge_ocr.errors import ConfigError


def done_count(db: Path) -> int:
    return query(db, "SELECT count(*) FROM files WHERE state = 'done'")[0][0]


def test_dropped_files_are_read_once_and_copies_recognised(dirs: dict[str, Path]) -> None:
    with running_agent(make_config(dirs)) as agent:
        write_label(dirs["in"] / "a.png", "LOT 1", 1)
        write_label(dirs["in"] / "sub" / "b.jpg", "LOT 2", 2)
        wait_for(lambda: done_count(dirs["db"]) == 2, what="two files done")
        (dirs["in"] / "a-copy.png").write_bytes((dirs["in"] / "a.png").read_bytes())
        wait_for(lambda: done_count(dirs["db"]) == 3, what="the copy recorded")
        (dirs["in"] / "a.png").touch()  # modified, same content: nothing new
        wait_for(lambda: agent.queue_depth() == 0, what="queue empty")
    rows = query(dirs["db"], "SELECT path, duplicate_of FROM files ORDER BY id")
    assert [Path(p).name for p, _ in rows] == ["a.png", "b.jpg", "a-copy.png"]
    assert rows[2][1] == 1
    assert query(dirs["db"], "SELECT count(*) FROM results")[0][0] == 2
    assert query(dirs["db"], "SELECT count(*) FROM outbox WHERE kind = 'result'")[0][0] == 2
    assert query(dirs["db"], "SELECT state FROM agent_status") == [("stopped",)]


def test_hostile_files_are_quarantined_while_work_goes_on(dirs: dict[str, Path], tmp_path: Path) -> None:
    inp = dirs["in"]
    (inp / "empty.png").write_bytes(b"")
    (inp / "text.jpg").write_text("not an image at all")
    good = tmp_path / "g.png"
    write_label(good, "GOOD", 3)
    (inp / "truncated.png").write_bytes(good.read_bytes()[:300])
    (inp / "huge.bmp").write_bytes(b"BM" + (36).to_bytes(4, "little") + b"\0" * 12 + (40).to_bytes(4, "little")
                                   + (30000).to_bytes(4, "little") + (30000).to_bytes(4, "little") + b"\1\0\x18\0" + b"\0" * 24)  # fmt: skip
    (inp / "hostile.tif").write_bytes(b"II*\x00" + b"\xff" * 200)
    (inp / "loop.png").symlink_to(inp / "loop.png")  # a symlink loop
    (inp / "dirloop").mkdir()
    (inp / "dirloop" / "back").symlink_to(inp, target_is_directory=True)
    write_label(inp / "ok1.png", "OK 1", 4)
    with running_agent(make_config(dirs)) as agent:
        write_label(inp / "ok2.png", "OK 2", 5)
        wait_for(lambda: done_count(dirs["db"]) == 2, what="good files done")
        wait_for(lambda: agent.stats.files_quarantined == 6, what="bad files quarantined")
    states = dict(query(dirs["db"], "SELECT path, state FROM files"))
    assert sorted(Path(p).name for p, s in states.items() if s == "quarantined") == [
        "empty.png", "hostile.tif", "huge.bmp", "loop.png", "text.jpg", "truncated.png"]  # fmt: skip
    qdir = dirs["data"] / "quarantine"
    errors = {p.name: p.read_text() for p in qdir.rglob("*.error.txt")}
    assert "file is empty" in errors["empty.png.error.txt"]
    assert "not an image" in errors["text.jpg.error.txt"]
    assert not (inp / "empty.png").exists()
    assert "symbolic link" in errors["loop.png.error.txt"]
    assert query(dirs["db"], "SELECT count(*) FROM events WHERE kind = 'file.quarantined'")[0][0] == 6


def test_after_archive_and_delete(dirs: dict[str, Path], tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    cfg = make_config(dirs, after=AfterSuccess.ARCHIVE, archive_dir=archive)
    write_label(dirs["in"] / "x" / "a.png", "A", 1)
    with running_agent(cfg):
        wait_for(lambda: (archive / "x" / "a.png").exists(), what="archived")
    assert not (dirs["in"] / "x" / "a.png").exists()
    assert query(dirs["db"], "SELECT stored_image FROM captures") == [(str(archive / "x" / "a.png"),)]
    cfg = make_config(dirs, after=AfterSuccess.DELETE)
    with running_agent(cfg):
        write_label(dirs["in"] / "b.png", "B", 2)
        wait_for(lambda: done_count(dirs["db"]) == 2, what="second done")
        wait_for(lambda: not (dirs["in"] / "b.png").exists(), what="deleted")


def test_overlapping_folders_are_refused(dirs: dict[str, Path]) -> None:
    cfg = make_config(dirs, after=AfterSuccess.ARCHIVE, archive_dir=dirs["in"] / "done")
    with pytest.raises(ConfigError, match="overlaps the archive folder"):
        Agent(cfg).run(threading.Event())
    cfg = make_config(dirs, quarantine_dir=dirs["in"].parent)
    with pytest.raises(ConfigError, match="overlaps the quarantine folder"):
        Agent(cfg).run(threading.Event())


def test_crashing_worker_is_restarted_and_the_file_retried_then_quarantined(
    dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_CRASH_MARK, "CRASH")
    cfg = make_config(dirs, max_attempts=2)
    with running_agent(cfg) as agent:
        write_label(dirs["in"] / "CRASH.png", "X", 1)
        write_label(dirs["in"] / "fine.png", "Y", 2)
        wait_for(
            lambda: agent.stats.files_quarantined == 1 and done_count(dirs["db"]) == 1, what="crash handled"
        )
        wait_for(lambda: agent.stats.worker_restarts == 2, what="both crashes seen")
        write_label(dirs["in"] / "after.png", "Z", 3)  # the restarted workers still work
        wait_for(lambda: done_count(dirs["db"]) == 2, what="work after restarts")
    [(state, attempts, error)] = query(
        dirs["db"], "SELECT state, attempts, last_error FROM files WHERE path LIKE '%/CRASH.png'"
    )
    assert (state, attempts) == ("quarantined", 2) and "worker crashed" in error


def test_burst_of_200_files(dirs: dict[str, Path]) -> None:
    cfg = make_config(dirs)
    cfg = replace(cfg, agent=replace(cfg.agent, queue_size=16))
    with running_agent(cfg) as agent:
        for i in range(200):
            write_label(dirs["in"] / f"{i // 50}" / f"f{i:03d}.png", f"N {i}", i)
        wait_for(lambda: done_count(dirs["db"]) == 200, timeout=120, what="200 files done")
        assert agent.stats.files_done == 200
    assert query(
        dirs["db"],
        "SELECT count(*), count(DISTINCT c.source_path) FROM results r JOIN captures c ON c.id = r.capture_id",
    ) == [(200, 200)]


def test_sigterm_like_stop_hands_back_in_flight_work(dirs: dict[str, Path]) -> None:
    for i in range(40):
        write_label(dirs["in"] / f"f{i:02d}.png", f"N {i}", i)
    cfg = make_config(dirs)
    cfg = replace(cfg, agent=replace(cfg.agent, shutdown_grace=0))  # no grace: in-flight jobs are handed back
    with running_agent(cfg):
        wait_for(lambda: done_count(dirs["db"]) >= 3, what="some done")
    counts = dict(query(dirs["db"], "SELECT state, count(*) FROM files GROUP BY state"))
    assert "processing" not in counts
    assert query(dirs["db"], "SELECT count(*) FROM files WHERE state = 'seen' AND attempts > 0")[0][0] == 0
    Agent(make_config(dirs), once=True).run(threading.Event())  # the next start reads the rest
    assert done_count(dirs["db"]) == 40
    assert query(dirs["db"], "SELECT count(*) FROM results")[0][0] == 40


def test_recipe_verdicts_go_to_jsonl_and_the_cli(dirs: dict[str, Path], tmp_path: Path, capsys) -> None:
    out = tmp_path / "verdicts.jsonl"
    cfg = make_config(dirs, recipe="any")
    recipe = RecipeConfig("any", (FieldSpec("first", regex=r"^(\w+)"),), ChecksSpec(not_expired=False))
    cfg = replace(cfg, recipes={"any": recipe}, outputs=OutputsConfig(jsonl=str(out)))
    write_label(dirs["in"] / "a.png", "LOT 12345", 1)
    write_label(dirs["in"] / "b.png", "LOT 67890", 2)
    Agent(cfg, once=True).run(threading.Event())
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 2 and {v["verdict"] for v in lines} <= {"pass", "fail", "unreadable"}
    assert {Path(v["image"]).name for v in lines} == {"a.png", "b.png"}
    assert query(dirs["db"], "SELECT count(*) FROM outbox WHERE kind = 'verdict'")[0][0] == 2

    db = str(dirs["db"])
    assert main(["results", "--db", db, "--json"]) == 0
    objs = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert sorted(Path(o["image"]).name for o in objs) == ["a.png", "b.png"]
    for o in objs:
        assert o["status"] == "success" and set(o["data"]) == {"text", "confidence", "lines"}
        assert o["engine"] == "fake" and o["verdict"] in ("pass", "fail", "unreadable")
        assert o["review_state"] == "unreviewed" and isinstance(o["result_id"], int)
    assert main(["results", "--db", db, "--csv", "--verdict", objs[0]["verdict"]]) == 0
    assert capsys.readouterr().out.startswith("result_id,capture_id")
    assert main(["status", "--db", db, "--json"]) == 1  # not running
    status = json.loads(capsys.readouterr().out)
    assert status["files"]["done"] == 2 and status["state"] == "stopped" and status["engine"] == "fake"

    assert main(["export", "--db", db, "--format", "ppocrlabel", "--out", str(tmp_path / "ppo")]) == 0
    label = (tmp_path / "ppo" / "Label.txt").read_text().splitlines()
    assert len(label) == 2
    rel, entries = label[0].split("\t")
    assert (tmp_path / "ppo" / rel).is_file()
    assert json.loads(entries)[0].keys() == {"transcription", "points", "difficult"}
    rec = (tmp_path / "ppo" / "rec_gt.txt").read_text().splitlines()
    assert rec and all((tmp_path / "ppo" / r.split("\t")[0]).is_file() for r in rec)
    assert main(["export", "--db", db, "--format", "jsonl", "--out", str(tmp_path / "x.jsonl")]) == 0
    assert len((tmp_path / "x.jsonl").read_text().splitlines()) == 2


def test_export_uses_corrections(dirs: dict[str, Path], tmp_path: Path) -> None:
    import sqlite3

    write_label(dirs["in"] / "a.png", "LOT 12345", 1)
    Agent(make_config(dirs), once=True).run(threading.Event())
    conn = sqlite3.connect(dirs["db"])
    conn.execute(
        "INSERT INTO corrections (result_id, line_index, before, after, at, by) VALUES (1, 0, 'x', 'FIXED', 't', 'me')"
    )
    conn.execute("UPDATE results SET review_state = 'corrected'")
    conn.commit()
    conn.close()
    assert (
        main(
            [
                "export",
                "--db",
                str(dirs["db"]),
                "--format",
                "ppocrlabel",
                "--reviewed",
                "--out",
                str(tmp_path / "p"),
            ]
        )
        == 0
    )
    assert (
        json.loads((tmp_path / "p" / "Label.txt").read_text().split("\t")[1])[0]["transcription"] == "FIXED"
    )
    assert "\tFIXED" in (tmp_path / "p" / "rec_gt.txt").read_text()


def test_vanishing_file_is_not_quarantined(dirs: dict[str, Path]) -> None:
    cfg = make_config(dirs, settle_seconds=0.3)
    with running_agent(cfg) as agent:
        for i in range(20):
            p = write_label(dirs["in"] / f"v{i}.png", "V", i)
            os.unlink(p)  # gone before it settles
        write_label(dirs["in"] / "stays.png", "S", 99)
        wait_for(lambda: done_count(dirs["db"]) == 1, what="the file that stayed")
        wait_for(lambda: agent.queue_depth() == 0, what="nothing pending")
    assert agent.stats.files_quarantined == 0
    assert query(dirs["db"], "SELECT count(*) FROM files")[0][0] == 1
