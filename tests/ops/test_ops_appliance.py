"""The appliance promise: one config file gives a watcher service that survives a SIGKILL of its
process (what a crash, an OOM kill or a power cut does to it) with nothing lost or done twice.

tests/agent/test_agent_sigkill.py kills the agent repeatedly mid-batch; this test covers the service
side: the config the installer writes (archive after success), files arriving while the agent is down,
restart without --once (as systemd does), metrics scraped while it runs, and a clean SIGTERM stop.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import httpx
import numpy as np
import psutil


def write_image(path: Path, seed: int) -> None:
    img = np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".png", img)
    assert ok
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(buf.tobytes())
    tmp.rename(path)


def wait_for(pred: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def query(db: Path, sql: str) -> list[tuple]:
    if not db.exists():
        return []
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()
    except sqlite3.Error:  # not created yet
        return []


def done(db: Path) -> int:
    rows = query(db, "SELECT count(*) FROM files WHERE state = 'done'")
    return rows[0][0] if rows else 0


def start(config: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "edge_ocr.cli", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )


def test_watcher_survives_sigkill_and_loses_nothing(tmp_path: Path, closed_port: int) -> None:
    inbox, done_dir, state = tmp_path / "in", tmp_path / "done", tmp_path / "state"
    inbox.mkdir()
    db = state / "edge-ocr.db"
    config = tmp_path / "edge-ocr.toml"
    config.write_text(  # what packaging/install.sh writes, with the fake engine
        f'[agent]\ndb = "{db}"\ndata_dir = "{state}"\nworkers = 1\nheartbeat = 0.5\n'
        f'[engine]\nname = "fake"\n'
        f'[[sources.folder]]\npath = "{inbox}"\nafter = "archive"\narchive_dir = "{done_dir}"\nsettle_seconds = 0.1\n'
    )
    env = {**os.environ, "EDGE_OCR_CONFIG": "", "EDGE_OCR_METRICS_PORT": str(closed_port)}
    for i in range(100):
        write_image(inbox / f"a{i:02d}.png", i)

    proc = start(config, env)
    try:
        wait_for(lambda: done(db) >= 3 or proc.poll() is not None, 60, "3 files done")
        assert proc.poll() is None, proc.stderr.read().decode()  # type: ignore[union-attr]
    finally:
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.kill()
        proc.wait(10)
        proc.stderr.close()  # type: ignore[union-attr]
        psutil.wait_procs(children, timeout=10)
    assert done(db) < 100, "the kill came too late to test anything"

    for i in range(100, 110):  # the scanner keeps delivering while the agent is down
        write_image(inbox / f"b{i:02d}.png", i)

    proc = start(config, env)  # what Restart=on-failure does
    try:
        wait_for(lambda: done(db) >= 110 or proc.poll() is not None, 90, "all 110 files done")
        assert proc.poll() is None, proc.stderr.read().decode()  # type: ignore[union-attr]
        scraped = httpx.get(f"http://127.0.0.1:{closed_port}/metrics", timeout=5).text
        assert 'edge_ocr_captures_total{source="folder",outcome="done"}' in scraped
        assert 'edge_ocr_ocr_seconds_bucket{source="folder",le="+Inf"}' in scraped
        proc.send_signal(signal.SIGTERM)  # systemctl stop
        assert proc.wait(30) == 0, proc.stderr.read().decode()  # type: ignore[union-attr]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stderr.close()  # type: ignore[union-attr]

    per_file = query(
        db, "SELECT c.source_path, count(*) FROM results r JOIN captures c ON c.id = r.capture_id GROUP BY 1"
    )
    assert len(per_file) == 110 and {n for _, n in per_file} == {1}
    assert query(db, "SELECT count(*) FROM files WHERE state != 'done'") == [(0,)]
    assert sorted(p.name for p in done_dir.rglob("*.png")) == sorted(
        [f"a{i:02d}.png" for i in range(100)] + [f"b{i:02d}.png" for i in range(100, 110)]
    )
    assert not list(inbox.glob("*.png"))
