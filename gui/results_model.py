"""A table model that pages results from SQLite: only the pages the view shows are read.

The first page is read at once (a few ms); the filtered count (which on a large store can take
tens of ms) comes from a background job and then extends the row count. Pages live in a small
LRU cache; a page that follows a cached one is read by keyset, any other by offset.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QBrush, QColor

from edge_ocr.store import review
from edge_ocr.store.db import Connection, SqliteError
from edge_ocr.store.review import PAGE_SIZE, ResultFilter, ResultRow, Sort, SortColumn
from edge_ocr_gui import workers

logger = logging.getLogger(__name__)

COLUMNS: tuple[tuple[SortColumn, str], ...] = (
    (SortColumn.ID, "#"),
    (SortColumn.CREATED_AT, "Time (UTC)"),
    (SortColumn.SOURCE, "Source"),
    (SortColumn.RECIPE, "Recipe"),
    (SortColumn.TEXT, "Text"),
    (SortColumn.CONFIDENCE, "Conf."),
    (SortColumn.VERDICT, "Verdict"),
    (SortColumn.REVIEW_STATE, "Review"),
)
VERDICT_COLOURS = {"pass": QColor("#d9f2d9"), "fail": QColor("#f8d0d0"), "unreadable": QColor("#e3e3e3")}
REVIEW_COLOURS = {
    "accepted": QColor("#1b7d1b"),
    "rejected": QColor("#b22222"),
    "corrected": QColor("#1f5fbf"),
}
MAX_CACHED_PAGES = 40
ResultIdRole = Qt.ItemDataRole.UserRole + 1

_Index = QModelIndex | QPersistentModelIndex


class ResultsModel(QAbstractTableModel):
    countChanged = Signal(int)  # the exact filtered count, once known
    queryFailed = Signal(str)

    def __init__(self, conn: Connection, db: Path, parent: Any = None) -> None:
        super().__init__(parent)
        self.conn = conn
        self.db = db
        self.filter = ResultFilter()
        self.sort_order = Sort()
        self._pages: OrderedDict[int, list[ResultRow]] = OrderedDict()
        self._rows = 0
        self._count: int | None = None
        self._generation = 0
        self._count_job: workers.Job | None = None
        self.pages_read = 0  # statistics for benchmarks and tests
        self.rows_read = 0

    # -- queries ---------------------------------------------------------------------------------

    def set_query(self, flt: ResultFilter | None = None, sort: Sort | None = None) -> None:
        """Show another filter or order: first page now, count in the background."""
        self.beginResetModel()
        if flt is not None:
            self.filter = flt
        if sort is not None:
            self.sort_order = sort
        self._pages.clear()
        self._generation += 1
        self._count = None
        try:
            first = self._read_page(0)
        except SqliteError as exc:
            first = []
            self.queryFailed.emit(f"could not read the results: {exc}")
        self._rows = len(first)
        self.endResetModel()
        if len(first) < PAGE_SIZE:
            self._set_count(len(first))
        else:
            self._start_count()

    def refresh(self) -> None:
        """The store changed: drop cached pages, repaint what is shown, recount in the background."""
        self._pages.clear()
        self._generation += 1
        if self._rows:
            self.dataChanged.emit(self.index(0, 0), self.index(self._rows - 1, len(COLUMNS) - 1))
        self._start_count()

    def _start_count(self) -> None:
        generation = self._generation
        flt = self.filter
        job = workers.Job(self.db, lambda conn, report, token: review.count_results(conn, flt))
        job.signals.done.connect(lambda n, g=generation: self._count_ready(g, n))
        job.signals.failed.connect(lambda message, g=generation: self._count_failed(g, message))
        self._count_job = job
        workers.start(job)

    def _count_ready(self, generation: int, count: int) -> None:
        if generation != self._generation:
            return  # an older query's answer
        self._set_count(count)

    def _count_failed(self, generation: int, message: str) -> None:
        if generation == self._generation:
            self.queryFailed.emit(f"could not count the results: {message}")

    def _set_count(self, count: int) -> None:
        if count > self._rows:
            self.beginInsertRows(QModelIndex(), self._rows, count - 1)
            self._rows = count
            self.endInsertRows()
        elif count < self._rows:
            self.beginRemoveRows(QModelIndex(), count, self._rows - 1)
            self._rows = count
            self.endRemoveRows()
        self._count = count
        self.countChanged.emit(count)

    @property
    def count(self) -> int | None:
        """The exact filtered count, or None while it is being counted."""
        return self._count

    def _read_page(self, page: int) -> list[ResultRow]:
        previous = self._pages.get(page - 1)
        if previous and len(previous) == PAGE_SIZE and self.sort_order.column in review.KEYSET_COLUMNS:
            rows = review.fetch_page_after(self.conn, self.filter, self.sort_order, after=previous[-1])
        else:
            rows = review.fetch_page(self.conn, self.filter, self.sort_order, offset=page * PAGE_SIZE)
        self._pages[page] = rows
        while len(self._pages) > MAX_CACHED_PAGES:
            self._pages.popitem(last=False)
        self.pages_read += 1
        self.rows_read += len(rows)
        return rows

    def row(self, row: int) -> ResultRow | None:
        if not 0 <= row < self._rows:
            return None
        page, offset = divmod(row, PAGE_SIZE)
        rows = self._pages.get(page)
        if rows is None:
            try:
                rows = self._read_page(page)
            except SqliteError as exc:
                logger.warning("reading page %d failed: %s", page, exc)
                return None
        else:
            self._pages.move_to_end(page)
        return rows[offset] if offset < len(rows) else None

    def result_id(self, row: int) -> int | None:
        r = self.row(row)
        return r.id if r is not None else None

    def row_of(self, result_id: int) -> int | None:
        """The row showing `result_id` (cached pages first, then one indexed count)."""
        for page, rows in self._pages.items():
            for i, r in enumerate(rows):
                if r.id == result_id:
                    return page * PAGE_SIZE + i
        pos = review.row_position(self.conn, self.filter, self.sort_order, result_id)
        return pos if pos is not None and pos < self._rows else None

    # -- Qt model --------------------------------------------------------------------------------

    def rowCount(self, parent: _Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else self._rows

    def columnCount(self, parent: _Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section][1]
        return None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        r = self.row(index.row())
        if r is None:
            return "…" if role == Qt.ItemDataRole.DisplayRole else None
        column = COLUMNS[index.column()][0]
        if role == Qt.ItemDataRole.DisplayRole:
            if column is SortColumn.CREATED_AT:
                return r.created_at[:19].replace("T", " ")
            if column is SortColumn.CONFIDENCE:
                return f"{r.confidence:.2f}"
            if column is SortColumn.TEXT:
                return r.text.replace("\n", " · ")
            value = r.sort_value(column)
            return "" if value is None else str(value)
        if role == Qt.ItemDataRole.BackgroundRole and column is SortColumn.VERDICT and r.verdict:
            return QBrush(VERDICT_COLOURS[r.verdict])
        if role == Qt.ItemDataRole.ForegroundRole and column is SortColumn.REVIEW_STATE:
            colour = REVIEW_COLOURS.get(r.review_state)
            return QBrush(colour) if colour else None
        if role == Qt.ItemDataRole.ToolTipRole and column is SortColumn.TEXT:
            return r.text
        if role == Qt.ItemDataRole.TextAlignmentRole and column in (SortColumn.ID, SortColumn.CONFIDENCE):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == ResultIdRole:
            return r.id
        return None

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        self.set_query(sort=Sort(COLUMNS[column][0], descending=order == Qt.SortOrder.DescendingOrder))
