"""One agent per store, and the agent's own troubles are never a file's (issue 21.3): a second real
`edge-ocr watch` on the same database and data folder, the scratch folder removed under a running
agent, a scratch folder that stays unusable. Real processes, real files, fake engine."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support import make_config, query, running_agent, wait_for, write_label

from edge_ocr.cli import main


def done_count(db: Path) -> int:
    try:
        return query(db, "SELECT count(*) FROM files WHERE state = 'done'")[0][0]
    except Exception:  # not created or not migrated yet
        return 0


def quarantined(db: Path) -> int:
    return query(db, "SELECT count(*) FROM files WHERE state = 'quarantined'")[0][0]


def watch(dirs: dict[str, Path]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "edge_ocr.cli", "watch", str(dirs["in"]), "--db", str(dirs["db"]),
         "--engine", "fake", "--workers", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "EDGE_OCR_CONFIG": "", "EDGE_OCR_DATA_DIR": str(dirs["data"])},
    )  # fmt: skip


def status(db: Path, capsys: pytest.CaptureFixture) -> tuple[int, dict]:
    code = main(["status", "--db", str(db), "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_a_second_agent_on_the_same_store_refuses_to_start_naming_the_first(
    dirs: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    first = watch(dirs)
    second = None
    try:
        write_label(dirs["in"] / "first.png", "FIRST", 0)
        wait_for(
            lambda: first.poll() is not None or done_count(dirs["db"]) == 1, 120, "the first agent working"
        )
        assert first.poll() is None, first.stderr.read()  # type: ignore[union-attr]
        for i in range(30):
            write_label(dirs["in"] / f"l{i:02d}.png", f"LOT {i}", i + 1)
        second = watch(dirs)
        try:
            _, err = second.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("a second agent on the same database started")
        assert second.returncode == 6
        lines = err.strip().splitlines()
        assert len(lines) == 1 and f"pid {first.pid}" in lines[0] and "already using" in lines[0], err
        wait_for(lambda: done_count(dirs["db"]) == 31, 120, "every label done by the first agent")
        code, report = status(dirs["db"], capsys)
        assert code == 0 and report["running"] and report["healthy"]
        assert report["agent_lock"]["pid"] == first.pid and report["agent_lock"]["held"]
    finally:
        for proc in (p for p in (first, second) if p is not None):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)
    assert first.returncode == 0
    assert quarantined(dirs["db"]) == 0
    assert query(dirs["db"], "SELECT count(*) FROM results")[0][0] == 31
    code, report = status(dirs["db"], capsys)
    assert report["agent_lock"] is None and not report["running"]  # the lock went with the agent


def test_a_scratch_folder_removed_under_the_agent_is_made_again(dirs: dict[str, Path]) -> None:
    with running_agent(make_config(dirs)) as agent:
        for i in range(3):
            write_label(dirs["in"] / f"a{i}.png", f"A {i}", i)
        wait_for(lambda: done_count(dirs["db"]) == 3, what="the first files done")
        shutil.rmtree(dirs["data"] / "work")  # as a temporary-file cleaner would
        for i in range(10):
            write_label(dirs["in"] / f"b{i}.png", f"B {i}", 10 + i)
        wait_for(lambda: done_count(dirs["db"]) == 13, 60, "every file done")
        assert agent.health.healthy
    assert quarantined(dirs["db"]) == 0 and agent.stats.files_failed == 0


def test_a_scratch_folder_that_stays_unusable_makes_the_agent_unhealthy_and_no_file_is_quarantined(
    dirs: dict[str, Path], capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING), running_agent(make_config(dirs)) as agent:
        shutil.rmtree(dirs["data"] / "work")
        (dirs["data"] / "work").write_text("a file where the scratch folder was")
        for i in range(4):
            write_label(dirs["in"] / f"c{i}.png", f"C {i}", i)

        def unhealthy() -> dict | None:
            code, report = status(dirs["db"], capsys)
            return report if code == 1 and report["running"] and not report["healthy"] else None

        report = wait_for(unhealthy, 60, "status to say the agent is unhealthy")
        assert [p["kind"] for p in report["problems"]] == ["scratch folder"]  # type: ignore[index]
        assert "not the file's fault" in report["problems"][0]["message"]  # type: ignore[index]
        assert query(dirs["db"], "SELECT state FROM agent_status") == [("unhealthy",)]
        assert quarantined(dirs["db"]) == 0 and done_count(dirs["db"]) == 0
        main(["status", "--db", str(dirs["db"])])
        assert "UNHEALTHY: scratch folder" in capsys.readouterr().out
        (dirs["data"] / "work").unlink()  # the trouble goes away: every file is read
        wait_for(lambda: done_count(dirs["db"]) == 4, 90, "every file done once the folder is back")
        wait_for(lambda: status(dirs["db"], capsys)[1]["healthy"], 30, "status healthy again")
        assert agent.health.healthy
    assert quarantined(dirs["db"]) == 0
    assert "the agent is unhealthy" in caplog.text and "the agent recovered" in caplog.text
