"""A store that goes away or fills up loses nothing (issue 21.4): the database file deleted or
replaced under a running agent that archives its inputs, and the disk holding the database full
(a real small tmpfs mounted by the test: it runs as root here and in CI). Real agents, real
worker processes (fake engine), real SQLite files, `status` and `doctor` through the CLI."""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from support import make_config, query, running_agent, wait_for, write_label

from edge_ocr.cli import main
from edge_ocr.config import AfterSuccess


def done_count(db: Path) -> int:
    try:
        return query(db, "SELECT count(*) FROM files WHERE state = 'done'")[0][0]
    except sqlite3.Error:
        return 0


def status(db: Path, capsys: pytest.CaptureFixture) -> tuple[int, dict]:
    code = main(["status", "--db", str(db), "--json"])
    return code, json.loads(capsys.readouterr().out)


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.png"))


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_database_deleted_or_replaced_under_the_agent_stops_it_and_archives_nothing_more(
    dirs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    caplog: pytest.LogCaptureFixture,
    how: str,
) -> None:
    cfg = make_config(dirs, after=AfterSuccess.ARCHIVE)
    archive = dirs["data"] / "archive"
    db = dirs["db"]
    with caplog.at_level(logging.INFO), running_agent(cfg) as agent:
        for i in range(3):
            write_label(dirs["in"] / f"a{i}.png", f"A {i}", i)
        wait_for(lambda: len(files_in(archive)) == 3, what="the first three archived")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        if how == "replaced":  # another database moved into its place (a restore gone wrong)
            other = tmp_path / "other.db"
            sqlite3.connect(other).close()
            other.replace(db)
        for i in range(20):
            write_label(dirs["in"] / f"b{i:02d}.png", f"B {i}", 10 + i)

        def said() -> dict | None:
            code, report = status(db, capsys)
            kinds = [p["kind"] for p in report.get("problems", [])]
            return report if code == 1 and report["running"] and kinds == ["database gone"] else None

        report = wait_for(said, 60, "status to say the database is gone")
        assert how in report["problems"][0]["message"]  # type: ignore[index]
        assert report["agent_lock"]["state"] == "stopped taking files"  # type: ignore[index]
        wait_for(lambda: agent.queue_depth() == 20, 30, "the 20 seen and left waiting, none taken")
    assert files_in(archive) == ["a0.png", "a1.png", "a2.png"]  # none of the 20 archived
    assert files_in(dirs["in"]) == [f"b{i:02d}.png" for i in range(20)]
    assert "it has stopped taking files" in caplog.text
    (rescued,) = db.parent.glob(db.name + ".rescued-*")  # what the lost file held, kept
    assert query(rescued, "SELECT count(*) FROM results")[0][0] >= 3
    # a new agent with a new database reads every one of the 20
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    with running_agent(cfg):
        wait_for(lambda: done_count(db) == 20, 60, "the 20 read by the next agent")
        wait_for(lambda: len(files_in(archive)) == 23, 30, "and archived")
    assert files_in(dirs["in"]) == []


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 8 MB file system (tmpfs) for the database and the data folder."""
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    fh = filler.open("wb")
    try:
        while True:
            fh.write(b"\0" * 65536)
            fh.flush()
    except OSError:  # full
        pass
    finally:
        with contextlib.suppress(OSError):
            fh.close()
    return filler


def test_a_full_disk_pauses_the_agent_which_goes_on_when_there_is_space_and_loses_nothing(
    dirs: dict[str, Path], small_disk: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    dirs = {**dirs, "db": small_disk / "edge-ocr.db", "data": small_disk / "data"}
    cfg = make_config(dirs, after=AfterSuccess.DELETE)
    doctor_toml = tmp_path / "doctor.toml"
    doctor_toml.write_text(f'[agent]\ndb = "{dirs["db"]}"\ndata_dir = "{dirs["data"]}"\n')
    n_first, n_more = 5, 40
    with running_agent(replace(cfg, agent=replace(cfg.agent, shutdown_grace=5))) as agent:
        for i in range(n_first):
            write_label(dirs["in"] / f"a{i}.png", f"A {i}", i)
        wait_for(lambda: done_count(dirs["db"]) == n_first, 60, "the first files done")
        filler = fill(small_disk)
        for i in range(n_more):
            write_label(dirs["in"] / f"b{i:02d}.png", f"B {i}", 100 + i)

        def paused() -> dict | None:
            code, report = status(dirs["db"], capsys)
            kinds = {p["kind"] for p in report.get("problems", [])}
            return report if code == 1 and report["running"] and "disk full" in kinds else None

        report = wait_for(paused, 60, "status to say the disk is full")
        (full,) = [p for p in report["problems"] if p["kind"] == "disk full"]  # type: ignore[index]
        assert "goes on by itself" in full["message"]
        main(["status", "--db", str(dirs["db"])])
        out = capsys.readouterr().out
        assert "disk full" in out and "start the agent to create an empty one" not in out
        assert doctor(doctor_toml, capsys) == [  # the database is healthy; the disk is full
            ("database", "ok", "quick_check ok"),
            ("database", "ok", "schema version"),
            ("disk", "fail", "disk full"),
        ]
        gone = {f"b{i:02d}.png" for i in range(n_more)} - set(files_in(dirs["in"]))
        stored = {Path(p).name for (p,) in query(dirs["db"], "SELECT source_path FROM captures")}
        assert gone <= stored  # nothing deleted without its result in the store
        filler.unlink()  # space is back: the agent goes on by itself
        wait_for(lambda: done_count(dirs["db"]) == n_first + n_more, 120, "every file done")
        wait_for(lambda: status(dirs["db"], capsys)[1]["healthy"], 30, "status healthy again")
        assert agent.health.healthy
    assert files_in(dirs["in"]) == []  # deleted, each after its result was stored
    assert query(dirs["db"], "SELECT count(*) FROM files WHERE state = 'quarantined'") == [(0,)]
    per_file = query(dirs["db"], "SELECT source_path, count(*) FROM captures GROUP BY 1")
    assert len(per_file) == n_first + n_more and {n for _, n in per_file} == {1}
    # no agent, a full disk: SQLite cannot open the database (no -shm): "disk full", not "damaged"
    fill(small_disk)
    assert main(["status", "--db", str(dirs["db"])]) == 6
    err = capsys.readouterr().err
    assert "disk" in err and "full" in err and "intact" in err and "empty one" not in err, err
    assert doctor(doctor_toml, capsys) == [
        ("database", "fail", "disk full"),
        ("disk", "fail", "disk full"),
    ]
    assert main(["doctor", "--config", str(doctor_toml), "--only", "database"]) == 1
    out = capsys.readouterr().out
    assert "do not move or replace the database" in out and "empty one" not in out


def doctor(config: Path, capsys: pytest.CaptureFixture) -> list[tuple[str, str, str]]:
    """(check, status, the part of the message that matters) of each database and disk finding."""
    main(["doctor", "--config", str(config), "--only", "database", "disk", "--json"])
    found = json.loads(capsys.readouterr().out)["findings"]
    out = []
    for f in found:
        key = next((k for k in ("disk full", "quick_check ok", "schema version") if k in f["message"]), "")
        out.append((f["check"], f["status"], key or f["message"]))
    return out
