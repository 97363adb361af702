"""The agent as a real subprocess, killed with SIGKILL mid-batch and restarted: every file done exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
from support import query, wait_for, write_label

N_FILES = 60
KILLS = 3


def start_agent(config: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "edge_ocr.cli", "run", "--config", str(config), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "EDGE_OCR_CONFIG": ""},
    )


def done(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        return query(db, "SELECT count(*) FROM files WHERE state = 'done'")[0][0]
    except Exception:  # the schema may not exist yet
        return 0


def kill_tree(proc: subprocess.Popen) -> None:
    children = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    proc.stderr.close()  # type: ignore[union-attr]
    _, alive = psutil.wait_procs(children, timeout=10)  # orphaned workers notice and exit by themselves
    assert not alive, f"workers outlived the agent: {alive}"


def test_sigkill_mid_batch_then_restart(dirs: dict[str, Path], tmp_path: Path) -> None:
    for i in range(N_FILES):
        write_label(dirs["in"] / f"f{i:03d}.png", f"N {i}", i)
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[agent]\ndb = "{dirs["db"]}"\ndata_dir = "{dirs["data"]}"\nworkers = 2\nheartbeat = 0.5\n'
        f'[engine]\nname = "fake"\n'
        f'[[sources.folder]]\npath = "{dirs["in"]}"\nsettle_seconds = 0.1\n'
    )
    for k in range(1, KILLS + 1):
        target = min(N_FILES - 1, done(dirs["db"]) + 5 * k)
        proc = start_agent(config)
        try:
            wait_for(
                lambda t=target, p=proc: done(dirs["db"]) >= t or p.poll() is not None, 60, f"{target} done"
            )
            assert proc.poll() is None, proc.stderr.read().decode()  # type: ignore[union-attr]
        finally:
            kill_tree(proc)
    proc = start_agent(config, "--once")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert done(dirs["db"]) == N_FILES
    per_file = query(
        dirs["db"],
        "SELECT c.source_path, count(*) FROM results r JOIN captures c ON c.id = r.capture_id GROUP BY 1",
    )
    assert len(per_file) == N_FILES and {n for _, n in per_file} == {1}
    assert query(dirs["db"], "SELECT count(*) FROM outbox WHERE kind = 'result'")[0][0] == N_FILES
