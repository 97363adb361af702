"""The review pane's fields (receipts): shown with their values, the selected field's boxes outlined
on the image, edited as corrections like lines (stored, audited, the verdict re-run)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_ocr.agent.records import checked, verdict_info
from edge_ocr.config import ChecksSpec, Config, RecipeConfig
from edge_ocr.fields import RECEIPT_FIELDS
from edge_ocr.store.db import open_connection
from edge_ocr.store.results import CaptureInfo, PageOutcome, store_capture
from edge_ocr.synth.dataset import write_png
from edge_ocr.synth.receipt import generate_receipt
from edge_ocr.types import OcrResult, TextLine
from edge_ocr_gui.main_window import MainWindow

RECIPE = RecipeConfig("expenses", extract="receipt", checks=ChecksSpec(max_total=100000.0))


@pytest.fixture
def receipt_store(tmp_path: Path):
    db = tmp_path / "receipts.db"
    receipt = generate_receipt(np.random.default_rng([1000, 2]))
    image = tmp_path / "receipt.png"
    write_png(image, receipt.image)
    lines = tuple(TextLine(line.text, 0.97, line.box) for line in receipt.lines)
    h, w = receipt.image.shape[:2]
    result = OcrResult(lines=lines, image_size=(w, h), engine="test", model="test/none")
    verdict, fields = checked(RECIPE, result)
    conn = open_connection(db)
    try:
        cap = CaptureInfo("folder:/in", str(image), width=w, height=h, recipe="expenses")
        store_capture(conn, PageOutcome(cap, result, verdict_info(verdict), fields))
    finally:
        conn.close()
    return db, fields


def _window(qtbot, db: Path) -> MainWindow:
    config = Config(recipes={"expenses": RECIPE})
    window = MainWindow(db, config=config)
    qtbot.addWidget(window)
    assert window.error is None, window.error
    qtbot.waitUntil(lambda: window.review.detail is not None, timeout=5000)
    return window


def test_fields_shown_with_their_boxes(qtbot, receipt_store) -> None:
    db, fields = receipt_store
    window = _window(qtbot, db)
    table = window.review.fields
    assert not table.isHidden()
    assert [table.item(i, 0).text() for i in range(table.rowCount())] == list(RECEIPT_FIELDS)
    total_row = RECEIPT_FIELDS.index("total")
    assert table.item(total_row, 1).text() == fields.total.text
    assert table.item(total_row, 2).text().startswith(fields.total.value)
    table.setCurrentCell(RECEIPT_FIELDS.index("address"), 1)
    outlined = window.review.image.field_outlines
    assert len(outlined) == len(fields.address.boxes)
    assert [[tuple(map(round, p)) for p in box] for box in outlined] == [
        [tuple(map(round, p)) for p in box] for box in fields.address.boxes
    ]


def test_field_edited_as_a_correction(qtbot, receipt_store) -> None:
    db, fields = receipt_store
    window = _window(qtbot, db)
    review = window.review
    table = review.fields
    row = RECEIPT_FIELDS.index("total")
    table.setCurrentCell(row, 1)
    with qtbot.waitSignal(review.resultChanged, timeout=5000):
        table.item(row, 1).setText("999999.00")
    detail = review.detail
    assert detail is not None and detail.review_state == "corrected"
    stored = detail.fields
    assert stored is not None and stored.fields.total.value == "999999.00"
    assert stored.corrected == {"total": fields.total.text}
    assert detail.verdict == "fail" and "above the limit" in "; ".join(detail.verdict_reasons)
    assert table.item(row, 1).font().italic()
    conn = open_connection(db, readonly=True)
    try:
        assert conn.execute("SELECT after FROM field_corrections").fetchall() == [("999999.00",)]
    finally:
        conn.close()


def test_results_without_fields_hide_the_table(qtbot, store: Path) -> None:
    window = MainWindow(store)
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: window.review.detail is not None, timeout=5000)
    assert window.review.fields.isHidden()
