"""GUI fixtures: offscreen Qt, demo stores built once per session, and a check that fails a test
leaving top-level widgets or background jobs behind."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from edge_ocr.store.demo import build_demo_store

ROWS = 600


@pytest.fixture(scope="session")
def template_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("template") / "results.db"
    build_demo_store(db, ROWS, seed=3, pool_size=6, days=3)
    return db


@pytest.fixture
def store(template_store: Path, tmp_path: Path) -> Path:
    """A fresh copy of a 600-result demo store (its images are shared, read-only)."""
    db = tmp_path / "results.db"
    shutil.copyfile(template_store, db)
    return db


@pytest.fixture(autouse=True)
def no_leaked_widgets(request: pytest.FixtureRequest):
    if "qapp" not in request.fixturenames and "qtbot" not in request.fixturenames:
        yield
        return
    from PySide6.QtCore import QCoreApplication, QEvent
    from PySide6.QtWidgets import QApplication

    from edge_ocr_gui import workers

    before = set(QApplication.topLevelWidgets())
    yield
    workers.wait_all()
    QCoreApplication.processEvents()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    leaked = [w for w in QApplication.topLevelWidgets() if w not in before and not w.isHidden()]
    leaked += [
        w
        for w in QApplication.topLevelWidgets()
        if w not in before and w.parent() is None and w.isWindow() and type(w).__module__.startswith("gui")
    ]
    assert not leaked, f"widgets leaked: {sorted({type(w).__name__ for w in leaked})}"
