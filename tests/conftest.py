"""Fixtures shared by every test package: built models, engines that run here."""

from __future__ import annotations

import threading

import pytest

from edge_ocr.engines.registry import engine_class
from edge_ocr.modelstore import ModelStore


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
def no_thread_leaks():
    """Fail a test that leaves non-daemon threads running."""
    before = set(threading.enumerate())
    yield
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon]
    assert not leaked, f"threads leaked: {leaked}"
