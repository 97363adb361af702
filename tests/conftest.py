"""Fixtures shared by every test package: built models, engines that run here."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_ocr.ocr.engines.registry import engine_class
from edge_ocr.ocr.modelstore import ModelStore


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked `lite` fails, never skips, where Paddle Lite cannot run: scripts/test.sh
    deselects those tests explicitly on such Pythons (-m "not lite"), and runs them on 3.10."""
    if item.get_closest_marker("lite"):
        reason = engine_class("lite").unavailable_reason()
        if reason:
            pytest.fail(
                f"needs Paddle Lite, which cannot run here ({reason}); deselect with -m 'not lite'",
                pytrace=False,
            )


@pytest.fixture(scope="session")
def model_store() -> ModelStore:
    """The built models (scripts/test.sh builds them before pytest runs)."""
    store = ModelStore()
    if not store.exists():
        pytest.fail(
            f"no models in {store.root}: run `scripts/test.sh` (it runs `edge-ocr models build` first)"
        )
    return store


@pytest.fixture(scope="session")
def runnable_sets(model_store: ModelStore) -> list[tuple[str, str]]:
    """(engine, variant) of every active x86 model set whose engine imports here."""
    out = []
    for s in model_store.sets():
        if s.target == "x86" and s.active and engine_class(s.engine).unavailable_reason() is None:
            out.append((s.engine, s.variant))
    return out


@pytest.fixture
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves threads running (5 s grace for threads that are stopping).
    Test folders whose code starts threads use it for every test (see their conftest.py)."""
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
    """An input folder and a database path for an agent under test."""
    d = {"in": tmp_path / "in", "data": tmp_path / "data", "db": tmp_path / "edge-ocr.db"}
    d["in"].mkdir()
    return d
