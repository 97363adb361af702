"""Fixtures: temp folders for an agent, and a check that fails tests leaking threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while True:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not extra or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not extra, f"test leaked threads: {[t.name for t in extra]}"


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, Path]:
    d = {"in": tmp_path / "in", "data": tmp_path / "data", "db": tmp_path / "edge-ocr.db"}
    d["in"].mkdir()
    return d
