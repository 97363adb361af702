"""Dashboard, settings, export and the `edge-ocr gui` command."""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

import pytest

from edge_ocr.store.db import utcnow
from edge_ocr_gui.main_window import MainWindow
from edge_ocr_gui.settings_page import SettingsPage, set_engine, validate_text

CONFIG = """# line 3 labels
[engine]
name = "auto"  # picked per machine

[[sources.folder]]
path = "/srv/in"
recipe = "lot-exp"

[recipes.lot-exp]
"""


def window_for(qtbot, db: Path, **kwargs) -> MainWindow:
    window = MainWindow(db, **kwargs)
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: window.review.model.count is not None, timeout=5000)
    return window


def test_dashboard_shows_aggregates_agent_and_sync(qtbot, store: Path) -> None:
    conn = sqlite3.connect(store)
    conn.execute(
        "INSERT INTO agent_status (agent_id, pid, host, heartbeat_at, state, queue_depth, engine, model, version, details) "
        "VALUES ('agent-1', 42, 'edge-box', ?, 'running', 3, 'onnxruntime', 'ppocrv4-mobile/fp32', '0.1.0', "
        '\'{"model_versions": {"onnxruntime": "1.20"}}\')',
        (utcnow(),),
    )
    conn.execute(
        "INSERT INTO sync_batches (batch_id, created_at, n_records, content_sha256, state, attempts, last_attempt_at, last_error) "
        "VALUES ('b1', ?, 5, 'x', 'pending', 2, ?, 'endpoint returned 503')",
        (utcnow(), utcnow()),
    )
    conn.commit()
    conn.close()
    window = window_for(qtbot, store)
    with qtbot.waitSignal(window.dashboard.updated, timeout=5000) as blocker:
        window.tabs.setCurrentIndex(1)
    data = blocker.args[0]
    assert data.total > 0 and 0 < data.read_rate <= 1
    assert sum(n for _, n in data.throughput) == data.total
    assert {name for name, _ in data.per_recipe} == {"gs1-carton", "lot-exp", "pharma-serial"}
    assert sum(c.total for _, c in data.per_shift) == data.total
    assert "running" in window.dashboard.agent.text() and "onnxruntime" in window.dashboard.agent.text()
    assert (
        "503" in window.dashboard.sync.text() and "pending batches: <b>1</b>" in window.dashboard.sync.text()
    )
    assert window.dashboard.read_rate.text().endswith("%")


def test_settings_validates_and_writes_back(qtbot, tmp_path: Path) -> None:
    path = tmp_path / "edge-ocr.toml"
    path.write_text(CONFIG)
    page = SettingsPage(path)
    qtbot.addWidget(page)
    assert "valid" in page.status.text() and "1 source" in page.status.text()
    page.editor.setPlainText(CONFIG.replace('recipe = "lot-exp"', 'recipe = "missing"'))
    assert not page.save()
    assert "not defined" in page.status.text()
    assert path.read_text() == CONFIG  # nothing written
    page.editor.setPlainText(CONFIG)
    page.engine.setCurrentText("onnx")
    page._engine_chosen()
    assert page.save()
    written = path.read_text()
    assert 'name = "onnx"' in written and "# picked per machine" not in written
    assert "# line 3 labels" in written  # comments elsewhere are kept
    assert validate_text(written).engine.name == "onnx"


def test_set_engine_adds_a_missing_section() -> None:
    assert validate_text(set_engine("", "onnx")).engine.name == "onnx"
    assert validate_text(set_engine("[engine]\nvariant = 'int8'\n", "lite")).engine.variant == "int8"


def test_service_buttons_are_disabled_without_a_user_unit(qtbot, monkeypatch) -> None:
    monkeypatch.setattr("edge_ocr_gui.settings_page.UNIT_DIRS", ())
    page = SettingsPage(None)
    qtbot.addWidget(page)
    assert not page.start_button.isEnabled()
    assert page.start_button.toolTip()


def test_export_of_the_filtered_selection(qtbot, store: Path, tmp_path: Path) -> None:
    window = window_for(qtbot, store)
    window.review.filters.verdict.setCurrentText("fail")
    qtbot.waitUntil(lambda: window.review.model.count is not None, timeout=5000)
    dialog = window.export()
    out = tmp_path / "fail.csv"
    dialog.path.setText(str(out))
    with qtbot.waitSignal(dialog.finished_export, timeout=10_000) as blocker:
        dialog.start()
    assert blocker.args == [window.review.model.count]
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == window.review.model.count and {r["verdict"] for r in rows} == {"fail"}

    dialog.format.setCurrentIndex(dialog.format.findData("ppocrlabel"))
    folder = tmp_path / "ppocr"
    dialog.path.setText(str(folder))
    with qtbot.waitSignal(dialog.finished_export, timeout=10_000) as blocker:
        dialog.start()
        dialog.cancel()
    assert blocker.args == [None] or (folder / "Label.txt").is_file()
    dialog.close()


def test_gui_export_writes_what_the_cli_writes(store: Path, tmp_path: Path) -> None:
    """One export implementation: the GUI's JSON Lines and CSV are byte for byte `edge-ocr export`'s
    for the same selection, and its PPOCRLabel folder is complete (line crops and rec_gt.txt)."""
    from edge_ocr.cli import main
    from edge_ocr.store.review import ResultFilter
    from edge_ocr_gui.export_formats import export_selection

    conn = sqlite3.connect(store)
    try:
        for fmt in ("jsonl", "csv"):
            mine, theirs = tmp_path / f"gui.{fmt}", tmp_path / f"cli.{fmt}"
            n = export_selection(
                conn, ResultFilter(review_states=("unreviewed", "accepted", "corrected")), fmt, mine
            )
            assert main(["export", "--db", str(store), "--format", fmt, "--out", str(theirs)]) == 0
            assert n > 0 and mine.read_bytes() == theirs.read_bytes()
        folder = tmp_path / "ppocr"
        reported: list[tuple[int, int]] = []
        export_selection(
            conn, ResultFilter(), "ppocrlabel", folder, progress=lambda d, t: reported.append((d, t))
        )
    finally:
        conn.close()
    labels = (folder / "Label.txt").read_text(encoding="utf-8").splitlines()
    rec = (folder / "rec_gt.txt").read_text(encoding="utf-8").splitlines()
    assert labels and rec and reported[-1][0] == reported[-1][1]
    for line in rec:
        crop, text = line.split("\t", 1)
        assert (folder / crop).is_file() and text.strip()


def test_gui_command_screenshot_and_bad_database(qapp, store: Path, tmp_path: Path, capsys) -> None:
    from edge_ocr.cli import main

    shot = tmp_path / "shot.png"
    assert main(["gui", "--db", str(store), "--screenshot", str(shot)]) == 0
    assert shot.stat().st_size > 10_000
    assert main(["gui", "--db", str(tmp_path / "nope.db"), "--screenshot", str(tmp_path / "x.png")]) == 6
    err = capsys.readouterr().err
    assert "no database at" in err and "Traceback" not in err


def damage_results_table(db: Path, name: str = "results") -> None:
    """Overwrite the root page of the table or index `name` with junk: the file still opens (its
    schema reads), but every read through `name` fails with "database disk image is malformed"."""
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (page_size,) = conn.execute("PRAGMA page_size").fetchone()
        (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (name,)).fetchone()
    finally:
        conn.close()
    with db.open("r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\xa5" * page_size)


@pytest.mark.parametrize("rows", [0, 1, 50, 199])
def test_gui_screenshot_of_a_store_smaller_than_a_page(
    qapp, tmp_path: Path, rows: int, monkeypatch, capsys
) -> None:
    """The whole count is known inside the window's constructor; the screenshot still waits for it."""
    from edge_ocr.cli import main
    from edge_ocr.store.db import open_connection
    from edge_ocr.store.demo import build_demo_store

    monkeypatch.setattr("edge_ocr_gui.app.SCREENSHOT_TIMEOUT_MS", 10_000)  # a failure costs 10 s, not 30
    db = tmp_path / "small.db"
    if rows:
        build_demo_store(db, rows, seed=rows, pool_size=2, days=1)
    else:
        open_connection(db).close()
    shot = tmp_path / "shot.png"
    assert main(["gui", "--db", str(db), "--screenshot", str(shot)]) == 0
    assert shot.stat().st_size > 10_000
    out, err = capsys.readouterr()
    assert out.startswith(f"saved {shot}") and err == ""


@pytest.mark.parametrize("page", ["review", "dashboard"])
def test_gui_screenshot_of_a_damaged_store_says_why(
    qapp, tmp_path: Path, page: str, monkeypatch, capsys
) -> None:
    from edge_ocr.cli import main
    from edge_ocr.store.demo import build_demo_store

    monkeypatch.setattr("edge_ocr_gui.app.SCREENSHOT_TIMEOUT_MS", 10_000)
    db = tmp_path / "damaged.db"
    build_demo_store(db, 30, seed=4, pool_size=2, days=1)
    damage_results_table(db)
    shot = tmp_path / "shot.png"
    assert main(["gui", "--db", str(db), "--page", page, "--screenshot", str(shot)]) == 6
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"edge-ocr: error: {db}: could not ")
    assert "malformed" in lines[0] and "edge-ocr doctor" in lines[0]
    assert shot.is_file()  # the window, with the message in its status bar


def test_first_page_is_signalled_after_construction(qtbot, tmp_path: Path) -> None:
    from edge_ocr.store.demo import build_demo_store

    db = tmp_path / "small.db"
    build_demo_store(db, 20, seed=2, pool_size=2, days=1)
    window = MainWindow(db)
    qtbot.addWidget(window)
    assert window.review.model.count == 20  # known inside the constructor ...
    with qtbot.waitSignal(window.firstPageShown, timeout=5000):
        pass  # ... and told once the caller has connected
    assert window.first_page_error is None

    damage_results_table(db)
    broken = MainWindow(db)
    qtbot.addWidget(broken)
    with qtbot.waitSignal(broken.firstPageFailed, timeout=5000) as blocker:
        pass
    assert blocker.args == [broken.first_page_error]
    assert "malformed" in broken.statusBar().currentMessage()


def test_a_count_that_cannot_be_read_is_reported(qtbot, tmp_path: Path) -> None:
    """More than a page: the first page reads, the background count fails (counting walks the
    smallest index, `results_confidence`, which is damaged here)."""
    from edge_ocr.store.demo import build_demo_store

    db = tmp_path / "counted.db"
    build_demo_store(db, 300, seed=6, pool_size=2, days=1)
    damage_results_table(db, "results_confidence")
    window = MainWindow(db)
    qtbot.addWidget(window)
    with qtbot.waitSignal(window.firstPageFailed, timeout=5000) as blocker:
        pass
    assert window.review.model.rowCount() == 200 and window.review.model.count is None
    (message,) = blocker.args
    assert message.startswith(f"{db}: could not count the results: ") and "malformed" in message
    assert "edge-ocr doctor" in message


def test_gui_without_pyside6_is_a_clear_error(tmp_path):
    """Without the gui extra, `edge-ocr gui` says which extra to install (exit 2), not a traceback."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "sys.modules['PySide6'] = None\n"  # what a venv without the gui extra imports: nothing
        "from edge_ocr.cli import main\n"
        "sys.exit(main(['gui', '--db', sys.argv[1]]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "r.db")], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'edge-ocr[gui]'" in proc.stderr and "Traceback" not in proc.stderr
