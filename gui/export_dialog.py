"""Export of the filtered selection (CSV, JSON Lines, PPOCRLabel) in the background, with progress
and cancel."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from edge_ocr.store.db import Connection
from edge_ocr.store.review import ResultFilter
from edge_ocr_gui import workers
from edge_ocr_gui.export_formats import FORMATS, export_selection


class ExportDialog(QDialog):
    finished_export = Signal(object)  # the number of results written, or None when cancelled/failed

    def __init__(self, db: Path, flt: ResultFilter, count: int | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export the filtered results")
        self.db = db
        self.filter = flt
        self.count = count
        self.job: workers.Job | None = None
        self.format = QComboBox()
        for key, (label, _suffix) in FORMATS.items():
            self.format.addItem(label, key)
        self.path = QLineEdit(str(Path.home() / "edge-ocr-export.csv"))
        browse = QPushButton("Browse…")
        self.progress = QProgressBar()
        self.progress.setRange(0, max(count or 0, 1))
        self.status = QLabel(f"{count:,} results selected" if count is not None else "")
        self.start_button = QPushButton("Export")
        self.cancel_button = QPushButton("Close")
        row = QHBoxLayout()
        row.addWidget(self.format)
        row.addWidget(self.path, 1)
        row.addWidget(browse)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addLayout(buttons)
        browse.clicked.connect(self._browse)
        self.format.currentIndexChanged.connect(self._format_changed)
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)

    def _format_changed(self) -> None:
        suffix = FORMATS[self.format.currentData()][1]
        path = Path(self.path.text())
        self.path.setText(str(path.with_suffix(suffix) if suffix else path.with_suffix("")))

    def _browse(self) -> None:
        chosen, _ = QFileDialog.getSaveFileName(self, "Export to", self.path.text())
        if chosen:
            self.path.setText(chosen)

    def start(self) -> None:
        if self.job is not None:
            return
        fmt, target, flt = self.format.currentData(), Path(self.path.text()), self.filter

        def work(conn: Connection, report: Callable[[int, int], None], token: workers.CancelToken) -> int:
            return export_selection(
                conn, flt, fmt, target, progress=report, cancelled=lambda: token.cancelled
            )

        job = workers.Job(self.db, work)
        job.signals.progress.connect(self._progress)
        job.signals.done.connect(self._done)
        job.signals.failed.connect(self._failed)
        self.job = workers.start(job)
        self.start_button.setEnabled(False)
        self.cancel_button.setText("Cancel")
        self.status.setText(f"exporting to {target}…")

    def _progress(self, done: int, total: int) -> None:
        if total:
            self.progress.setRange(0, total)
        self.progress.setValue(done)

    def _done(self, written: int) -> None:
        self.job = None
        self.start_button.setEnabled(True)
        self.cancel_button.setText("Close")
        self.status.setText(f"{written:,} results written to {self.path.text()}")
        self.finished_export.emit(written)

    def _failed(self, message: str) -> None:
        self.job = None
        self.start_button.setEnabled(True)
        self.cancel_button.setText("Close")
        self.status.setText(message)
        self.finished_export.emit(None)

    def cancel(self) -> None:
        if self.job is not None:
            self.job.token.cancel()
        else:
            self.reject()
