"""`edge-ocr run` with a [sync] section ships what the agent reads, and `edge-ocr status` shows it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2

from edge_ocr.store.db import open_connection
from edge_ocr.synth import standard_label

EXE = str(Path(sys.executable).with_name("edge-ocr"))


def _acked(db: Path) -> tuple[int, int]:
    if not db.exists():
        return 0, 0
    conn = open_connection(db)
    try:
        return conn.execute("SELECT count(*), count(acked_at) FROM outbox").fetchone()
    finally:
        conn.close()


def test_agent_runs_the_sync_service(endpoint, tmp_path, secret_file, device_id):
    inbox = tmp_path / "in"
    inbox.mkdir()
    db = tmp_path / "edge-ocr.db"
    cfg = tmp_path / "station.toml"
    cfg.write_text(
        f"""
[agent]
db = "{db}"
workers = 1

[engine]
name = "fake"

[[sources.folder]]
path = "{inbox}"
settle_seconds = 0.2

[sync]
endpoint_url = "{endpoint.url}"
device_id = "{device_id}"
secret_file = "{secret_file}"
poll_interval_s = 0.1
batch_max_age_s = 0.1
"""
    )
    proc = subprocess.Popen([EXE, "run", "--config", str(cfg)], stderr=subprocess.PIPE, text=True)
    try:
        for i in range(3):
            tmp = inbox / f".label{i}.tmp"
            cv2.imwrite(str(tmp) + ".png", standard_label(seed=i).image)
            Path(str(tmp) + ".png").rename(inbox / f"label{i}.png")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            total, acked = _acked(db)
            if total >= 3 and acked == total:
                break
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.2)
        total, acked = _acked(db)
        assert total >= 3 and acked == total, (total, acked)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    status = subprocess.run(
        [EXE, "status", "--db", str(db), "--json"], capture_output=True, text=True, timeout=60
    )
    report = json.loads(status.stdout)
    assert report["sync"]["acked_records"] == total
    assert report["sync"]["last_success_at"]
    assert report["sync"]["pending_batches"] == 0
