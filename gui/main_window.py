"""The main window: review, dashboard and settings over one store, or a clear message when the
store cannot be opened."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import QLabel, QMainWindow, QTabWidget, QVBoxLayout, QWidget

from edge_ocr.config import Config
from edge_ocr.errors import StoreError
from edge_ocr_gui import workers
from edge_ocr_gui.dashboard_page import DashboardPage
from edge_ocr_gui.evaluator import field_evaluator, recipe_evaluator
from edge_ocr_gui.export_dialog import ExportDialog
from edge_ocr_gui.review_page import ReviewPage
from edge_ocr_gui.settings_page import SettingsPage
from edge_ocr_gui.store import StoreSession

logger = logging.getLogger(__name__)

PAGES = ("review", "dashboard", "settings")


def unreadable_store_message(db: Path, problem: str) -> str:
    """One line for a store that opened but whose contents cannot be read."""
    return f"{db}: {problem}; check it with `edge-ocr doctor` and restore it from a backup if it is damaged"


class StoreErrorPage(QWidget):
    def __init__(self, message: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.message = message
        title = QLabel("<h2>The results database cannot be opened</h2>")
        text = QLabel(message)
        text.setObjectName("storeErrorMessage")
        text.setWordWrap(True)
        text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        hint = QLabel("Start the GUI with <tt>--db PATH</tt> to open another store, or build a demo one with "
                      "<tt>edge-ocr demo-store --rows 1000 --db PATH</tt>.")  # fmt: skip
        hint.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addStretch(1)
        for w in (title, text, hint):
            layout.addWidget(w)
        layout.addStretch(2)


class MainWindow(QMainWindow):
    """The window over the store at `db`. When the store opens, the review page reads its first
    page at once and the count after; `firstPageShown` or, when either cannot be read,
    `firstPageFailed` tells which (once, from the event loop: connect after construction)."""

    firstPageShown = Signal()  # the review page shows its first page and the count
    firstPageFailed = Signal(str)  # instead: the first page or its count cannot be read (the message)

    def __init__(
        self,
        db: Path,
        *,
        config: Config | None = None,
        config_path: Path | None = None,
        page: str = "review",
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"edge-ocr: {db}")
        self.resize(1400, 860)
        self.db = Path(db)
        self.session: StoreSession | None = None
        self.review: ReviewPage | None = None
        self.dashboard: DashboardPage | None = None
        self.error: str | None = None  # the store cannot be opened: the window shows this instead
        self.first_page_error: str | None = None  # the store opened but its results cannot be read
        self._first_page_settled = False
        try:
            self.session = StoreSession.open(self.db, self)
        except StoreError as exc:
            self.error = str(exc)
            logger.info("%s", exc)  # shown in the window; `--screenshot` exits with it
            self.setCentralWidget(StoreErrorPage(self.error))
            self.statusBar().showMessage(self.error)
            return
        self.review = ReviewPage(
            self.session, recipe_evaluator(config), field_evaluator=field_evaluator(config)
        )
        self.dashboard = DashboardPage(self.session)
        self.settings = SettingsPage(config_path)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.review, "Review")
        self.tabs.addTab(self.dashboard, "Dashboard")
        self.tabs.addTab(self.settings, "Settings")
        self.setCentralWidget(self.tabs)
        self.review.message.connect(lambda m: self.statusBar().showMessage(m, 8000))
        self.tabs.currentChanged.connect(self._tab_changed)

        export = QAction("&Export filtered results…", self)
        export.setShortcut(QKeySequence("Ctrl+E"))
        export.triggered.connect(self.export)
        menu = self.menuBar().addMenu("&File")
        menu.addAction(export)
        close = QAction("&Quit", self)
        close.setShortcut(QKeySequence.StandardKey.Quit)
        close.triggered.connect(self.close)
        menu.addAction(close)
        for i, name in enumerate(PAGES):
            action = QAction(name.capitalize(), self)
            action.setShortcut(QKeySequence(f"Alt+{i + 1}"))
            action.triggered.connect(lambda _=False, i=i: self.tabs.setCurrentIndex(i))
            self.addAction(action)

        self.review.model.countChanged.connect(self._count_known)
        self.review.model.queryFailed.connect(self._query_failed)
        self.tabs.setCurrentIndex(PAGES.index(page))
        self.review.load()
        self.review.table.setFocus()
        self.session.start_polling()

    def _count_known(self, _count: int) -> None:
        if self._first_page_settled or self.review is None or self.review.model.count is None:
            return
        self._first_page_settled = True
        # a small store's count is known inside the constructor: tell from the event loop, once
        # whoever made the window has connected
        QTimer.singleShot(0, self, self.firstPageShown.emit)

    def _query_failed(self, message: str) -> None:
        if self._first_page_settled:
            return  # later failures go to the status bar only
        self._first_page_settled = True
        self.first_page_error = unreadable_store_message(self.db, message)
        logger.info("%s", self.first_page_error)  # the same
        self.statusBar().showMessage(self.first_page_error)
        QTimer.singleShot(0, self, lambda: self.firstPageFailed.emit(self.first_page_error))

    def _tab_changed(self, index: int) -> None:
        if PAGES[index] == "dashboard" and self.dashboard is not None:
            self.dashboard.refresh()

    def export(self) -> ExportDialog | None:
        if self.review is None:
            return None
        dialog = ExportDialog(self.db, self.review.model.filter, self.review.model.count, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None
        workers.wait_all()
        super().closeEvent(event)
