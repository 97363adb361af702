"""Filters over the results: verdict, review state, confidence, date range, source, recipe, search."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from PySide6.QtCore import QDateTime, Qt, QTimer, QTimeZone, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDateTimeEdit,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from edge_ocr.store.review import REVIEW_STATES, VERDICTS, FilterChoices, ResultFilter

ANY = "any"
DATE_PRESETS = (
    ("any time", None),
    ("last hour", 1),
    ("last 24 h", 24),
    ("last 7 days", 24 * 7),
    ("custom", -1),
)
SEARCH_DEBOUNCE_MS = 250


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class FilterBar(QWidget):
    changed = Signal(object)  # ResultFilter

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.search = QLineEdit(placeholderText="Search recognised and corrected text (Ctrl+F)")
        self.search.setClearButtonEnabled(True)
        self.verdict = QComboBox()
        self.verdict.addItems([ANY, *VERDICTS])
        self.review_state = QComboBox()
        self.review_state.addItems([ANY, *REVIEW_STATES])
        self.min_conf = QDoubleSpinBox(minimum=0.0, maximum=1.0, singleStep=0.05, value=0.0, decimals=2)
        self.max_conf = QDoubleSpinBox(minimum=0.0, maximum=1.0, singleStep=0.05, value=1.0, decimals=2)
        self.dates = QComboBox()
        for name, _ in DATE_PRESETS:
            self.dates.addItem(name)
        now = QDateTime.currentDateTimeUtc()
        self.date_from = QDateTimeEdit(now.addDays(-1), displayFormat="yyyy-MM-dd HH:mm", calendarPopup=True)
        self.date_to = QDateTimeEdit(now.addSecs(3600), displayFormat="yyyy-MM-dd HH:mm", calendarPopup=True)
        for edit in (self.date_from, self.date_to):
            edit.setTimeZone(QTimeZone.utc())
            edit.setVisible(False)
        self.source = QComboBox()
        self.recipe = QComboBox()
        self.set_choices(FilterChoices((), ()))
        self.count_label = QLabel("")
        self.count_label.setMinimumWidth(110)
        self.count_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

        self._debounce = QTimer(self, singleShot=True, interval=SEARCH_DEBOUNCE_MS)
        self._debounce.timeout.connect(self.emit_changed)
        self.search.textChanged.connect(self._debounce.start)
        self.search.returnPressed.connect(self.emit_changed)
        for combo in (self.verdict, self.review_state, self.source, self.recipe):
            combo.currentIndexChanged.connect(self.emit_changed)
        for spin in (self.min_conf, self.max_conf):
            spin.valueChanged.connect(self._debounce.start)
        self.dates.currentIndexChanged.connect(self._dates_changed)
        for edit in (self.date_from, self.date_to):
            edit.dateTimeChanged.connect(self._debounce.start)

        top = QHBoxLayout()
        top.addWidget(self.search, 1)
        top.addWidget(self.count_label)
        row = QHBoxLayout()
        for label, widget in (
            ("Verdict", self.verdict),
            ("Review", self.review_state),
            ("Conf.", self.min_conf),
            ("to", self.max_conf),
            ("Source", self.source),
            ("Recipe", self.recipe),
            ("Time", self.dates),
        ):
            row.addWidget(QLabel(label))
            row.addWidget(widget)
        row.addWidget(self.date_from)
        row.addWidget(self.date_to)
        row.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addLayout(row)

    def set_choices(self, choices: FilterChoices) -> None:
        for combo, values in ((self.source, choices.sources), (self.recipe, choices.recipes)):
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems([ANY, *values])
            index = combo.findText(current)
            combo.setCurrentIndex(max(index, 0))
            combo.blockSignals(False)

    def _dates_changed(self) -> None:
        custom = DATE_PRESETS[self.dates.currentIndex()][1] == -1
        self.date_from.setVisible(custom)
        self.date_to.setVisible(custom)
        self.emit_changed()

    def current_filter(self) -> ResultFilter:
        def one(combo: QComboBox) -> tuple[str, ...]:
            text = combo.currentText()
            return () if text in (ANY, "") else (text,)

        since = until = None
        hours = DATE_PRESETS[self.dates.currentIndex()][1]
        if hours == -1:
            since = _iso(self.date_from.dateTime().toPython().replace(tzinfo=timezone.utc))
            until = _iso(self.date_to.dateTime().toPython().replace(tzinfo=timezone.utc))
        elif hours:
            since = _iso(datetime.now(timezone.utc) - timedelta(hours=hours))
        min_conf, max_conf = self.min_conf.value(), self.max_conf.value()
        return ResultFilter(
            verdicts=one(self.verdict),
            review_states=one(self.review_state),
            min_confidence=min_conf if min_conf > 0 else None,
            max_confidence=max_conf if max_conf < 1 else None,
            since=since,
            until=until,
            sources=one(self.source),
            recipes=one(self.recipe),
            search=self.search.text().strip(),
        )

    def emit_changed(self) -> None:
        self._debounce.stop()
        self.changed.emit(self.current_filter())

    def show_count(self, count: int | None) -> None:
        self.count_label.setText("counting…" if count is None else f"{count:,} results")
