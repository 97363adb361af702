"""The review page: filters, the paged results table, the image with its boxes, the lines, and the
reviewer's keyboard flow.

Keys (the page never needs the mouse):
  N next unreviewed · A accept and go on · R reject and go on · E or F2 edit the selected line
  (Enter stores the correction, Esc cancels) · Up/Down move between lines · J/K next/previous row
  · Ctrl+F search · Esc back to the lines · V colour boxes by confidence or verdict · +/-/0 zoom
  · Ctrl+I to the fields (receipts: company, date, address, total; the selected field's boxes are
  outlined on the image, F2 edits its text as a correction)
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QItemSelectionModel, QModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from edge_ocr.errors import EdgeOcrError
from edge_ocr.fields import RECEIPT_FIELDS
from edge_ocr.store import corrections, review
from edge_ocr.store import fields as stored_fields
from edge_ocr.store.corrections import Evaluator, ResultDetail
from edge_ocr.store.db import SqliteError
from edge_ocr.store.review import ReviewError
from edge_ocr_gui.filter_bar import FilterBar
from edge_ocr_gui.image_view import ColourMode, ImageView, confidence_colour
from edge_ocr_gui.results_model import COLUMNS, ResultsModel
from edge_ocr_gui.store import StoreSession

logger = logging.getLogger(__name__)


class LinesTable(QTableWidget):
    """The result's lines: text (editable) and confidence."""

    lineEdited = Signal(int, str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, 2, parent)
        self.setHorizontalHeaderLabels(["Line", "Conf."])
        self.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.verticalHeader().setVisible(False)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setEditTriggers(
            QAbstractItemView.EditTrigger.EditKeyPressed | QAbstractItemView.EditTrigger.DoubleClicked
        )
        self._filling = False
        self.itemChanged.connect(self._changed)

    def show_lines(self, detail: ResultDetail | None) -> None:
        self._filling = True
        lines = detail.lines if detail else ()
        self.setRowCount(len(lines))
        for i, line in enumerate(lines):
            text = QTableWidgetItem(line.text)
            tip = f"read as: {line.raw_text}" if line.raw_text and line.raw_text != line.text else line.text
            text.setToolTip(tip)
            if line.raw_text and line.raw_text != line.text:
                font = text.font()
                font.setItalic(True)
                text.setFont(font)
            conf = QTableWidgetItem(f"{line.confidence:.2f}")
            conf.setFlags(conf.flags() & ~Qt.ItemFlag.ItemIsEditable)
            conf.setForeground(confidence_colour(line.confidence))
            self.setItem(i, 0, text)
            self.setItem(i, 1, conf)
        self._filling = False

    def _changed(self, item: QTableWidgetItem) -> None:
        if not self._filling and item.column() == 0:
            self.lineEdited.emit(item.row(), item.text())

    def edit_current(self) -> None:
        row = self.currentRow()
        if row < 0 and self.rowCount():
            row = 0
            self.selectRow(0)
        if row >= 0:
            self.setFocus()
            self.editItem(self.item(row, 0))


class FieldsTable(QTableWidget):
    """The result's fields (receipts): name, text (editable), normalised value, confidence. Hidden
    for results without fields."""

    fieldEdited = Signal(str, str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, 4, parent)
        self.setHorizontalHeaderLabels(["Field", "Text", "Value", "Conf."])
        header = self.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.ResizeToContents)
        self.verticalHeader().setVisible(False)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setEditTriggers(
            QAbstractItemView.EditTrigger.EditKeyPressed | QAbstractItemView.EditTrigger.DoubleClicked
        )
        self._filling = False
        self._boxes: dict[str, tuple] = {}
        self.itemChanged.connect(self._changed)

    def show_fields(self, detail: ResultDetail | None) -> None:
        self._filling = True
        stored = detail.fields if detail else None
        self.setVisible(stored is not None)
        self._boxes = {}
        names = RECEIPT_FIELDS if stored is not None else ()
        self.setRowCount(len(names))
        for i, name in enumerate(names):
            f = stored.fields.get(name) if stored else None
            label = QTableWidgetItem(name)
            label.setFlags(label.flags() & ~Qt.ItemFlag.ItemIsEditable)
            text = QTableWidgetItem(f.text if f else "")
            if f is None:
                text.setToolTip(stored.fields.missing.get(name, "not found") if stored else "")
            elif stored and name in stored.corrected:
                text.setToolTip(f"read as: {stored.corrected[name]}")
                font = text.font()
                font.setItalic(True)
                text.setFont(font)
            value = QTableWidgetItem(
                (f.value or "") + (f" {f.currency}" if f and f.currency else "") if f else "—"
            )
            value.setFlags(value.flags() & ~Qt.ItemFlag.ItemIsEditable)
            conf = QTableWidgetItem(f"{f.confidence:.2f}" if f else "")
            conf.setFlags(conf.flags() & ~Qt.ItemFlag.ItemIsEditable)
            if f is not None:
                conf.setForeground(confidence_colour(f.confidence))
                self._boxes[name] = f.boxes
            for col, item in enumerate((label, text, value, conf)):
                self.setItem(i, col, item)
        self._filling = False

    def field_at(self, row: int) -> str | None:
        item = self.item(row, 0)
        return item.text() if item is not None else None

    def boxes_of(self, name: str | None) -> tuple:
        return self._boxes.get(name or "", ())

    def _changed(self, item: QTableWidgetItem) -> None:
        if not self._filling and item.column() == 1:
            name = self.field_at(item.row())
            if name is not None:
                self.fieldEdited.emit(name, item.text())

    def edit_current(self) -> None:
        row = max(self.currentRow(), 0)
        if self.rowCount():
            self.setCurrentCell(row, 1)
            self.setFocus()
            self.editItem(self.item(row, 1))


class ReviewPage(QWidget):
    resultShown = Signal(int)  # the detail pane shows this result
    resultChanged = Signal(int)  # a reviewer action was stored for this result
    message = Signal(str)  # for the status bar

    def __init__(
        self,
        session: StoreSession,
        evaluator: Evaluator | None = None,
        parent: QWidget | None = None,
        field_evaluator: stored_fields.FieldEvaluator | None = None,
    ):
        super().__init__(parent)
        self.session = session
        self.evaluator = evaluator
        self.field_evaluator = field_evaluator
        self.detail: ResultDetail | None = None

        self.filters = FilterBar()
        self.model = ResultsModel(session.conn, session.path, self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSortingEnabled(True)
        self.table.horizontalHeader().setSortIndicator(1, Qt.SortOrder.DescendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.setWordWrap(False)
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        for i, (column, _) in enumerate(COLUMNS):
            mode = (
                QHeaderView.ResizeMode.Stretch
                if column.value == "text"
                else QHeaderView.ResizeMode.Interactive
            )
            header.setSectionResizeMode(i, mode)
        for i, width in enumerate((60, 140, 130, 100, 0, 50, 70, 85)):
            if width:
                self.table.setColumnWidth(i, width)

        self.image = ImageView()
        self.lines = LinesTable()
        self.fields = FieldsTable()
        self.fields.setVisible(False)
        self.heading = QLabel("No result selected")
        self.heading.setTextFormat(Qt.TextFormat.RichText)
        self.heading.setWordWrap(True)
        self.colours = QComboBox()
        self.colours.addItems(["boxes by confidence", "boxes by verdict"])
        self.accept_button = QPushButton("Accept (A)")
        self.reject_button = QPushButton("Reject (R)")
        self.edit_button = QPushButton("Edit line (E)")
        self.next_button = QPushButton("Next unreviewed (N)")

        buttons = QHBoxLayout()
        for b in (self.next_button, self.accept_button, self.edit_button, self.reject_button):
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(self.colours)
        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(0, 0, 0, 0)
        side_layout.addWidget(self.heading)
        side_layout.addWidget(self.fields)
        side_layout.addWidget(self.lines, 1)
        side_layout.addLayout(buttons)
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.image)
        right.addWidget(side)
        right.setSizes([420, 260])
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.table)
        split.addWidget(right)
        split.setSizes([640, 560])
        layout = QVBoxLayout(self)
        layout.addWidget(self.filters)
        layout.addWidget(split, 1)

        self.filters.changed.connect(self.apply_filter)
        self.model.countChanged.connect(self.filters.show_count)
        self.model.queryFailed.connect(self.message)
        self.model.modelReset.connect(lambda: self.filters.show_count(self.model.count))
        self.model.countChanged.connect(lambda _count: self._follow_detail())
        self.table.selectionModel().currentRowChanged.connect(self._row_changed)
        self.lines.currentCellChanged.connect(lambda row, *_: self.image.select_line(row))
        # after the editor has closed, not inside the table's own itemChanged
        self.lines.lineEdited.connect(
            lambda i, text: QTimer.singleShot(0, self, lambda: self.correct_line(i, text))
        )
        self.image.lineClicked.connect(self._box_clicked)
        self.fields.currentCellChanged.connect(
            lambda row, *_: self.image.show_field(self.fields.boxes_of(self.fields.field_at(row)))
        )
        self.fields.fieldEdited.connect(
            lambda name, text: QTimer.singleShot(0, self, lambda: self.correct_field(name, text))
        )
        self.colours.currentIndexChanged.connect(
            lambda i: self.image.set_colour_mode(ColourMode.VERDICT if i else ColourMode.CONFIDENCE)
        )
        self.accept_button.clicked.connect(self.accept)
        self.reject_button.clicked.connect(self.reject)
        self.edit_button.clicked.connect(self.lines.edit_current)
        self.next_button.clicked.connect(self.next_unreviewed)
        session.changed.connect(self.store_changed)

        keys = (
            ("N", self.next_unreviewed),
            ("A", self.accept),
            ("R", self.reject),
            ("E", self.lines.edit_current),
            ("F2", self.lines.edit_current),
            ("J", lambda: self.move_row(1)),
            ("K", lambda: self.move_row(-1)),
            ("V", lambda: self.colours.setCurrentIndex(1 - self.colours.currentIndex())),
            ("Ctrl+F", self._focus_search),
            ("Ctrl+I", self._focus_fields),
            ("Esc", self._focus_lines),
        )
        for key, slot in keys:
            shortcut = QShortcut(QKeySequence(key), self)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(slot)

    # -- loading ---------------------------------------------------------------------------------

    def load(self) -> None:
        """Fill choices and show the first page (the caller then waits for `firstPageShown`)."""
        try:
            self.filters.set_choices(review.filter_choices(self.session.conn))
        except SqliteError as exc:
            self.message.emit(f"could not read sources and recipes: {exc}")
        self.apply_filter(self.filters.current_filter())

    def apply_filter(self, flt: review.ResultFilter) -> None:
        current = self.detail.id if self.detail else None
        self.model.set_query(flt)
        self.filters.show_count(self.model.count)
        if current is not None:
            self.select_result(current, show=False)
        if self.detail is None and self.model.rowCount():
            self.table.selectRow(0)

    def store_changed(self) -> None:
        """Another connection committed: new results from the agent, or our own writer."""
        self.model.refresh()
        self._follow_detail()
        if self.detail is not None:
            try:
                fresh = corrections.load_result(self.session.conn, self.detail.id)
            except (ReviewError, SqliteError):
                return
            if fresh != self.detail:
                self.show_detail(fresh, keep_line=True)

    # -- selection -------------------------------------------------------------------------------

    def _row_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        result_id = self.model.result_id(current.row()) if current.isValid() else None
        if result_id is not None and (self.detail is None or self.detail.id != result_id):
            self.show_result(result_id)

    def show_result(self, result_id: int) -> None:
        try:
            detail = corrections.load_result(self.session.conn, result_id)
        except (ReviewError, SqliteError) as exc:
            self.message.emit(str(exc))
            return
        self.show_detail(detail)

    def show_detail(self, detail: ResultDetail, *, keep_line: bool = False) -> None:
        line = self.lines.currentRow() if keep_line else 0
        self.detail = detail
        size = (detail.width, detail.height) if detail.width and detail.height else None
        self.image.show_result(detail.image_path, detail.lines, detail.verdict, size, detail.image_file)
        self.lines.show_lines(detail)
        field_row = self.fields.currentRow() if keep_line else -1
        self.fields.show_fields(detail)
        if field_row >= 0 and detail.fields is not None:
            self.fields.setCurrentCell(field_row, 1)
        if detail.lines:
            line = min(max(line, 0), len(detail.lines) - 1)
            self.lines.setCurrentCell(line, 0)
            self.image.select_line(line)
        reasons = "; ".join(detail.verdict_reasons)
        verdict = detail.verdict or "no verdict"
        colour = {"pass": "#1f9d3a", "fail": "#d62728"}.get(detail.verdict or "", "#7f7f7f")
        corrected = f" · {len(detail.corrections)} correction(s)" if detail.corrections else ""
        by = f" by {detail.reviewed_by}" if detail.reviewed_by else ""
        self.heading.setText(
            f"<b>#{detail.id}</b> · {detail.created_at[:19].replace('T', ' ')} · {detail.source} · "
            f"recipe <b>{detail.recipe or '-'}</b> · conf. {detail.confidence:.2f}<br>"
            f"<span style='color:{colour}'><b>{verdict}</b></span>{': ' + reasons if reasons else ''} · "
            f"<i>{detail.review_state}{by}</i>{corrected}"
        )
        self.resultShown.emit(detail.id)

    def select_result(self, result_id: int, *, show: bool = True) -> bool:
        """Select the row of `result_id` (when the filter shows it) and show it."""
        row = self.model.row_of(result_id)
        if row is not None:
            self._highlight_row(row)
            self.table.scrollTo(self.model.index(row, 0))
        if show and (self.detail is None or self.detail.id != result_id):
            self.show_result(result_id)
        return row is not None

    def _highlight_row(self, row: int) -> None:
        self.table.selectionModel().setCurrentIndex(
            self.model.index(row, 0),
            QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows,
        )

    def _follow_detail(self) -> None:
        """Keep the highlighted row on the result the detail pane shows (accept, reject and edits
        act on that one): rows shift when new results arrive or others leave the filter. A result
        that has left the filter leaves no row highlighted. The view does not scroll."""
        if self.detail is None:
            return
        current = self.table.currentIndex()
        if current.isValid() and self.model.result_id(current.row()) == self.detail.id:
            return
        try:
            row = self.model.row_of(self.detail.id)
        except SqliteError as exc:
            logger.warning("finding result %d in the table failed: %s", self.detail.id, exc)
            row = None
        if row is not None:
            self._highlight_row(row)
        else:
            self.table.selectionModel().clear()

    def move_row(self, step: int) -> None:
        row = self.table.currentIndex().row() + step
        if 0 <= row < self.model.rowCount():
            self.table.selectRow(row)
        self._focus_lines()

    def _box_clicked(self, index: int) -> None:
        self.lines.setCurrentCell(index, 0)

    def _focus_search(self) -> None:
        self.filters.search.setFocus()
        self.filters.search.selectAll()

    def _focus_fields(self) -> None:
        if self.fields.isVisible() and self.fields.rowCount():
            self.fields.setFocus()
            if self.fields.currentRow() < 0:
                self.fields.setCurrentCell(0, 1)

    def _focus_lines(self) -> None:
        self.lines.setFocus()
        if self.lines.currentRow() < 0 and self.lines.rowCount():
            self.lines.setCurrentCell(0, 0)

    # -- reviewer actions ------------------------------------------------------------------------

    def next_unreviewed(self) -> int | None:
        after = self.detail.id if self.detail else None
        try:
            result_id = review.next_unreviewed(
                self.session.conn, self.model.filter, self.model.sort_order, after
            )
        except SqliteError as exc:
            self.message.emit(str(exc))
            return None
        if result_id is None:
            self.message.emit("no unreviewed result left in this selection")
            return None
        self.select_result(result_id)
        self._focus_lines()
        return result_id

    def _store(self, action: str, work) -> bool:
        try:
            detail = work()
        except ReviewError as exc:
            self.message.emit(str(exc))
            return False
        except (EdgeOcrError, SqliteError) as exc:
            self.message.emit(f"could not store the {action}: {exc}")
            return False
        self.model.refresh()
        self.show_detail(detail, keep_line=True)
        self._follow_detail()
        self.resultChanged.emit(detail.id)
        return True

    def accept(self) -> None:
        self._review("accepted")

    def reject(self) -> None:
        self._review("rejected")

    def _review(self, state: str) -> None:
        if self.detail is None:
            return
        result_id = self.detail.id
        ok = self._store(
            state,
            lambda: corrections.set_review_state(
                self.session.writer, result_id, state, by=self.session.reviewer
            ),
        )
        if ok:
            self.message.emit(f"result {result_id} {state}")
            self.next_unreviewed()

    def correct_line(self, line_index: int, text: str) -> None:
        if self.detail is None:
            return
        result_id = self.detail.id
        ok = self._store(
            "correction",
            lambda: corrections.correct_line(
                self.session.writer,
                result_id,
                line_index,
                text,
                by=self.session.reviewer,
                evaluate=self.evaluator,
            ),
        )
        if ok:
            verdict = self.detail.verdict if self.detail else None
            self.message.emit(f"line {line_index + 1} of result {result_id} corrected; verdict {verdict}")
        self._focus_lines()

    def correct_field(self, name: str, text: str) -> None:
        if self.detail is None:
            return
        result_id = self.detail.id
        ok = self._store(
            "field correction",
            lambda: self._correct_field(result_id, name, text),
        )
        if ok:
            verdict = self.detail.verdict if self.detail else None
            self.message.emit(f"{name} of result {result_id} corrected; verdict {verdict}")

    def _correct_field(self, result_id: int, name: str, text: str) -> ResultDetail:
        stored_fields.correct_field(
            self.session.writer,
            result_id,
            name,
            text,
            by=self.session.reviewer,
            evaluate=self.field_evaluator,
        )
        return corrections.load_result(self.session.writer, result_id)
