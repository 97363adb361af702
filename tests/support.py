"""Helpers for agent and source tests: images, a fake-engine config, a running agent, DB queries."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from edge_ocr.agent.app import Agent, running_in_thread
from edge_ocr.config import AgentConfig, Config, EngineConfig, FolderSourceConfig


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def assert_lite_survives(family: str, sizes: list[tuple[int, int]], timeout: float) -> None:
    """Read a generated label of each (width, height) in turn, whole and as a crop without detection,
    with Paddle Lite in a child process: shrinking inputs corrupt Lite's heap (double free,
    segfault), and in a child a crash fails the caller's test instead of ending the test run."""
    code = textwrap.dedent(
        f"""
        import numpy as np
        from edge_ocr.ocr.reader import open_pipeline
        from edge_ocr.synth import GeneratorOptions, generate_label
        with open_pipeline("lite", "fp32", models="{family}") as pipe:
            for w, h in {sizes!r}:
                label = generate_label(np.random.default_rng(w), GeneratorOptions(width=w, height=h, n_lines=2))
                pipe.run(label.image)
                crop = label.image[: max(16, h // 8), : max(32, w // 2)]
                pipe.run(crop, det=False)
        print("survived")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    assert "survived" in proc.stdout


def label_image(text: str, seed: int = 0) -> np.ndarray:
    img = np.full((120, 420, 3), 255, np.uint8)
    cv2.putText(img, text, (10, 70), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (0, 0, 0), 3)
    cv2.circle(img, (400, 100), 3 + seed % 10, (0, 0, 0), -1)  # different pixels per seed
    return img


def write_label(path: Path, text: str, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name + ".tmp")
    ok, buf = cv2.imencode(path.suffix or ".png", label_image(text, seed))
    assert ok
    tmp.write_bytes(buf.tobytes())
    tmp.rename(path)  # atomic, like a well-behaved scanner
    return path


def make_config(dirs: dict[str, Path], **folder_kw) -> Config:
    folder = FolderSourceConfig(
        path=dirs["in"], settle_seconds=folder_kw.pop("settle_seconds", 0.1), **folder_kw
    )
    return Config(
        agent=AgentConfig(db=dirs["db"], data_dir=dirs["data"], workers=2, heartbeat=0.5, shutdown_grace=10),
        engine=EngineConfig(name="fake"),
        folders=(folder,),
    )


def running_agent(cfg: Config) -> contextlib.AbstractContextManager[Agent]:
    return running_in_thread(cfg, name="agent-under-test", ready_timeout=60.0, stop_timeout=60.0)


def query(db: Path, sql: str, params: tuple = ()) -> list[tuple]:
    conn = sqlite3.connect(db, timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()
