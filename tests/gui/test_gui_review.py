"""The review window over a real store: paging, filters, search, corrections, keyboard flow, live rows."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from edge_ocr.store import review
from edge_ocr.store.db import open_connection
from edge_ocr.store.demo import build_demo_store
from edge_ocr_gui.main_window import MainWindow


def open_window(qtbot, db: Path, **kwargs) -> MainWindow:
    window = MainWindow(db, **kwargs)
    qtbot.addWidget(window)
    return window


def ready(qtbot, db: Path, **kwargs) -> MainWindow:
    window = open_window(qtbot, db, **kwargs)
    assert window.error is None, window.error
    qtbot.waitUntil(lambda: window.review.model.count is not None, timeout=5000)
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)
    return window


def sql_count(db: Path, where: str = "1", params: tuple = ()) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            f"SELECT count(*) FROM results r JOIN captures c ON c.id = r.capture_id WHERE {where}", params
        ).fetchone()[0]
    finally:
        conn.close()


def test_opens_store_and_shows_first_page(qtbot, store: Path) -> None:
    window = open_window(qtbot, store)
    with qtbot.waitSignal(window.firstPageShown, timeout=5000):
        pass  # the count job answers after the constructor has returned
    model = window.review.model
    assert model.count == sql_count(store)
    assert model.rowCount() == model.count
    assert window.review.detail is not None  # the first row is shown
    newest = model.row(0)
    assert newest.created_at == max(model.row(i).created_at for i in range(50))
    assert "results" in window.review.filters.count_label.text()


def test_scrolling_to_the_end_reads_pages_not_the_table(qtbot, tmp_path: Path) -> None:
    db = tmp_path / "larger.db"
    build_demo_store(db, 5000, seed=5, pool_size=2)
    window = ready(qtbot, db)
    model = window.review.model
    assert model.rowCount() == 5000
    window.review.table.scrollToBottom()
    window.review.table.viewport().repaint()
    last = model.row(model.rowCount() - 1)
    assert last is not None and last.id == 1  # oldest last
    assert model.rows_read <= 5 * 200  # a few pages, never the table


def test_filter_by_verdict_review_state_and_confidence(qtbot, store: Path) -> None:
    window = ready(qtbot, store)
    bar = window.review.filters
    model = window.review.model
    bar.verdict.setCurrentText("fail")
    qtbot.waitUntil(lambda: model.count == sql_count(store, "r.verdict = 'fail'"), timeout=5000)
    assert {model.row(i).verdict for i in range(model.rowCount())} == {"fail"}
    bar.review_state.setCurrentText("unreviewed")
    qtbot.waitUntil(
        lambda: model.count == sql_count(store, "r.verdict = 'fail' AND r.review_state = 'unreviewed'"),
        timeout=5000,
    )
    bar.verdict.setCurrentText("any")
    bar.review_state.setCurrentText("any")
    bar.max_conf.setValue(0.5)
    bar.emit_changed()
    qtbot.waitUntil(lambda: model.count == sql_count(store, "r.confidence <= 0.5"), timeout=5000)
    assert all(model.row(i).confidence <= 0.5 for i in range(model.rowCount()))


def test_filter_by_source_recipe_and_sort(qtbot, store: Path) -> None:
    window = ready(qtbot, store)
    bar = window.review.filters
    model = window.review.model
    assert bar.source.findText("camera:line2") > 0
    bar.source.setCurrentText("camera:line2")
    bar.recipe.setCurrentText("lot-exp")
    expected = sql_count(store, "c.source = 'camera:line2' AND r.recipe = 'lot-exp'")
    qtbot.waitUntil(lambda: model.count == expected, timeout=5000)
    assert {(model.row(i).source, model.row(i).recipe) for i in range(model.rowCount())} == {
        ("camera:line2", "lot-exp")
    }
    model.sort(5, Qt.SortOrder.AscendingOrder)  # confidence, lowest first
    confidences = [model.row(i).confidence for i in range(model.rowCount())]
    assert confidences == sorted(confidences)


def test_full_text_search(qtbot, store: Path) -> None:
    window = ready(qtbot, store)
    bar = window.review.filters
    model = window.review.model
    word = window.review.detail.lines[0].text.split()[0]
    bar.search.setText(word)
    bar.emit_changed()
    conn = sqlite3.connect(store)
    expected = conn.execute(
        "SELECT count(*) FROM results_fts WHERE results_fts MATCH ?", (review.fts_query(word),)
    ).fetchone()[0]
    conn.close()
    qtbot.waitUntil(lambda: model.count == expected, timeout=5000)
    assert expected > 0
    assert all(word.lower() in model.row(i).text.lower() for i in range(min(model.rowCount(), 100)))
    bar.search.setText("zzqqxx")
    bar.emit_changed()
    qtbot.waitUntil(lambda: model.count == 0, timeout=5000)


def test_selecting_a_line_highlights_its_box_and_back(qtbot, store: Path) -> None:
    window = ready(qtbot, store)
    page = window.review
    # the demo store's times are relative to now, so which result comes first depends on the hour:
    # pick the newest result with at least two lines
    conn = sqlite3.connect(store)
    (rid,) = conn.execute(
        "SELECT id FROM results WHERE n_lines >= 2 ORDER BY created_at DESC LIMIT 1"
    ).fetchone()
    conn.close()
    assert page.select_result(rid)
    assert page.detail.id == rid and len(page.detail.lines) >= 2
    page.lines.setCurrentCell(1, 0)
    assert page.image.selected_line == 1
    page.image.lineClicked.emit(0)  # a click on box 0
    assert page.lines.currentRow() == 0
    page.image.select_line(0)
    before = page.image.zoom_factor
    qtbot.keyClick(page.image, Qt.Key.Key_Plus)
    assert page.image.zoom_factor > before


def test_edit_a_line_stores_a_correction_visible_from_the_cli(
    qtbot, store: Path, tmp_path: Path, capsys
) -> None:
    window = ready(qtbot, store)
    page = window.review
    result_id = page.detail.id
    page.lines.setFocus()
    page.lines.setCurrentCell(0, 0)
    qtbot.keyClick(page.lines, Qt.Key.Key_E)  # the page's shortcut opens the editor
    editor = page.lines.focusWidget()
    assert editor is not page.lines
    editor.selectAll()
    qtbot.keyClicks(editor, "CORRECTED TEXT 123")
    with qtbot.waitSignal(page.resultChanged, timeout=5000) as blocker:
        qtbot.keyClick(editor, Qt.Key.Key_Return)
    assert blocker.args == [result_id]
    assert page.detail.lines[0].text == "CORRECTED TEXT 123"
    assert page.detail.review_state == "corrected"

    conn = sqlite3.connect(store)
    (after, by) = conn.execute(
        "SELECT after, by FROM corrections WHERE result_id = ? ORDER BY id DESC", (result_id,)
    ).fetchone()
    assert after == "CORRECTED TEXT 123" and by
    assert (
        conn.execute(
            "SELECT count(*) FROM events WHERE kind = 'result.corrected' AND subject = ?",
            (f"result:{result_id}",),
        ).fetchone()[0]
        == 1
    )
    assert conn.execute("SELECT count(*) FROM outbox WHERE kind = 'correction'").fetchone()[0] == 1
    conn.close()

    from edge_ocr.cli import main

    out = tmp_path / "export.jsonl"
    code = main(["export", "--db", str(store), "--format", "jsonl", "--out", str(out)])
    assert code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert "CORRECTED TEXT 123" in json.dumps(
        [r for r in rows if r.get("id", r.get("result_id")) == result_id]
    )


def test_keyboard_review_of_20_results_with_3_corrections(qtbot, store: Path) -> None:
    window = ready(qtbot, store)
    page = window.review
    page.filters.review_state.setCurrentText("unreviewed")
    qtbot.waitUntil(lambda: page.model.count is not None, timeout=5000)
    # keys go to whichever widget has the focus, as a reviewer's would
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_N)
    seen, corrected = [], []
    for i in range(20):
        current = page.detail.id
        seen.append(current)
        if i in (2, 9, 15):
            qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_E)
            editor = QApplication.focusWidget()
            assert editor is not page.lines  # the line's editor is open
            qtbot.keyClick(editor, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
            qtbot.keyClicks(editor, f"FIXED {i}")
            with qtbot.waitSignal(page.resultChanged, timeout=5000):
                qtbot.keyClick(editor, Qt.Key.Key_Return)
            corrected.append(current)
        key = Qt.Key.Key_R if i == 5 else Qt.Key.Key_A
        with qtbot.waitSignal(page.resultChanged, timeout=5000):
            qtbot.keyClick(QApplication.focusWidget(), key)
        assert page.detail.id != current  # moved on to the next unreviewed one
    assert len(set(seen)) == 20
    conn = open_connection(store, readonly=True)
    states = dict(
        conn.execute(
            f"SELECT id, review_state FROM results WHERE id IN ({','.join(map(str, seen))})"
        ).fetchall()
    )
    assert all(states[r] != "unreviewed" for r in seen)
    assert [states[r] for r in corrected] == ["corrected"] * 3
    assert states[seen[5]] == "rejected"
    assert (
        conn.execute(
            "SELECT count(DISTINCT result_id) FROM corrections WHERE by != 'anna' AND by != 'bo' AND by != 'chen'"
        ).fetchone()[0]
        == 3
    )
    assert conn.execute("SELECT count(*) FROM outbox WHERE kind = 'review'").fetchone()[0] == 20
    conn.close()


def test_a_new_row_appears_live(qtbot, store: Path) -> None:
    window = ready(qtbot, store)
    model = window.review.model
    before = model.count
    build_demo_store(store, 3, seed=99, pool_size=2, days=0.001)  # another process's writes, in effect
    qtbot.waitUntil(lambda: model.count == before + 3, timeout=5000)
    newest = model.row(0)
    assert newest.id == sql_count(store)  # ids follow insertion; newest first


def test_selection_stays_on_its_result_when_new_rows_arrive(qtbot, store: Path) -> None:
    """New results shift the rows down: the highlighted row follows the result the detail pane
    shows, and accept acts on the result the reviewer sees highlighted."""
    window = ready(qtbot, store)
    page = window.review
    model = page.model
    page.table.setFocus()
    qtbot.keyClick(page.table, Qt.Key.Key_Down)  # the reviewer moves down a few rows
    qtbot.keyClick(page.table, Qt.Key.Key_Down)
    qtbot.keyClick(page.table, Qt.Key.Key_Down)
    row = page.table.currentIndex().row()
    chosen = page.detail.id
    assert row == 3 and model.result_id(row) == chosen

    before = model.count
    with qtbot.waitSignal(window.session.changed, timeout=5000):
        build_demo_store(store, 3, seed=98, pool_size=2, days=0.001)  # the agent's writes, in effect
    qtbot.waitUntil(lambda: model.count == before + 3, timeout=5000)
    assert model.row_of(chosen) == row + 3  # the result moved down

    highlighted = [model.result_id(i.row()) for i in page.table.selectionModel().selectedRows()]
    assert highlighted == [chosen]
    assert model.result_id(page.table.currentIndex().row()) == chosen == page.detail.id

    with qtbot.waitSignal(page.resultChanged, timeout=5000) as blocker:
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_A)
    assert blocker.args == [chosen]
    conn = sqlite3.connect(store)
    try:
        reviewed = conn.execute("SELECT ref_id FROM outbox WHERE kind = 'review'").fetchall()
    finally:
        conn.close()
    assert reviewed == [(chosen,)]


@pytest.mark.parametrize("kind", ["missing", "corrupt", "newer", "locked", "old"])
def test_bad_database_gives_a_message(qtbot, tmp_path: Path, store: Path, kind: str, monkeypatch) -> None:
    from edge_ocr.store import db as dbmod

    path = tmp_path / "bad.db"
    holder = None
    if kind == "missing":
        expected = "no database"
    elif kind == "corrupt":
        path.write_bytes(b"this is not a database" * 100)
        expected = "not a readable SQLite database"
    elif kind == "newer":
        path = store
        conn = sqlite3.connect(path)
        conn.execute("INSERT INTO schema_migrations VALUES (999, 'future', 'x')")
        conn.commit()
        conn.close()
        expected = "newer than this edge-ocr"
    elif kind == "old":
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE unrelated (x)")
        conn.commit()
        conn.close()
        expected = "schema version 0"
    else:
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE t (x)")
        conn.commit()
        conn.close()
        monkeypatch.setattr(dbmod, "BUSY_TIMEOUT_MS", 50)
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        expected = "locked"
    try:
        window = open_window(qtbot, path)
    finally:
        if holder is not None:
            holder.execute("ROLLBACK")
            holder.close()
    assert window.error is not None and expected in window.error
    assert window.centralWidget().message == window.error


def test_images_whose_names_show_the_same_each_open_as_themselves(qtbot, tmp_path: Path) -> None:
    """A name that is not UTF-8 has no QString form: the review page opens the exact bytes, and
    never the look-alike file named with the display form (issue 21.5)."""
    import os

    from PIL import Image
    from PySide6.QtWidgets import QGraphicsPixmapItem

    from edge_ocr.store.results import CaptureInfo, insert_result
    from edge_ocr.types import OcrResult, TextLine

    folder = tmp_path / "in"
    folder.mkdir()
    raw = os.fsencode(folder) + b"/lot\xff.png"
    literal = os.fsencode(folder) + b"/lot\\xff.png"
    Image.new("RGB", (420, 120), "white").save(os.fsdecode(raw), format="PNG")
    Image.new("RGB", (300, 90), "white").save(os.fsdecode(literal), format="PNG")
    db = tmp_path / "names.db"
    conn = open_connection(db)
    ids = {}
    for name, text in ((raw, "RAW"), (literal, "LITERAL")):
        shown = name.decode("utf-8", "backslashreplace")
        cap = CaptureInfo("folder:in", shown, stored_image=shown, source_path_raw=name, stored_image_raw=name)
        line = TextLine(text, 0.9, ((1, 1), (50, 1), (50, 20), (1, 20)))
        conn.execute("BEGIN IMMEDIATE")
        ids[text] = insert_result(conn, cap, OcrResult((line,), (1, 1), "fake", "fake/none", {})).result_id
        conn.execute("COMMIT")
    conn.close()
    window = ready(qtbot, db)
    page = window.review
    for text, size in (("RAW", (420, 120)), ("LITERAL", (300, 90))):
        assert page.select_result(ids[text])
        pixmaps = [i for i in page.image.scene().items() if isinstance(i, QGraphicsPixmapItem)]
        assert [(p.pixmap().width(), p.pixmap().height()) for p in pixmaps] == [size], text
