"""Two small QPainter charts (QtCharts is not in PySide6-Essentials): bars over time and stacked
bars per category."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

SERIES_COLOURS = (QColor("#2ca02c"), QColor("#d62728"), QColor("#7f7f7f"), QColor("#bcbd22"))


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return value


class _Chart(QWidget):
    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = title
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumHeight(180)

    def sizeHint(self) -> QSize:
        return QSize(420, 240)

    def _frame(self, painter: QPainter) -> QRectF:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.fillRect(self.rect(), self.palette().base())
        font = QFont(self.font())
        font.setBold(True)
        painter.setFont(font)
        painter.setPen(self.palette().text().color())
        painter.drawText(QRectF(8, 4, self.width() - 16, 20), Qt.AlignmentFlag.AlignLeft, self.title)
        painter.setFont(self.font())
        return QRectF(46, 30, self.width() - 56, self.height() - 66)

    def _axis(self, painter: QPainter, plot: QRectF, top: float) -> None:
        painter.setPen(QPen(QColor("#bbbbbb"), 1))
        for i in range(5):
            y = plot.bottom() - plot.height() * i / 4
            painter.drawLine(plot.left(), y, plot.right(), y)
            painter.drawText(
                QRectF(0, y - 8, plot.left() - 6, 16), Qt.AlignmentFlag.AlignRight, f"{top * i / 4:g}"
            )


class TimeBarChart(_Chart):
    """One bar per time bucket (e.g. results per hour)."""

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(title, parent)
        self.points: tuple[tuple[str, int], ...] = ()

    def set_points(self, points: Sequence[tuple[str, int]]) -> None:
        self.points = tuple(points)
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        try:
            plot = self._frame(painter)
            top = _nice_max(max((v for _, v in self.points), default=0))
            self._axis(painter, plot, top)
            if not self.points:
                painter.drawText(plot, Qt.AlignmentFlag.AlignCenter, "no results in this window")
                return
            step = plot.width() / len(self.points)
            label_every = max(1, int(len(self.points) / max(1, plot.width() / 48)))
            for i, (label, value) in enumerate(self.points):
                h = plot.height() * value / top
                painter.fillRect(
                    QRectF(plot.left() + i * step + 1, plot.bottom() - h, max(1, step - 2), h),
                    QColor("#1f77b4"),
                )
                if i % label_every == 0:
                    painter.setPen(self.palette().text().color())
                    painter.drawText(
                        QRectF(plot.left() + i * step - 20, plot.bottom() + 4, 40 + step, 16),
                        Qt.AlignmentFlag.AlignHCenter,
                        label[-2:] + "h",
                    )
        finally:
            painter.end()


class StackedBarChart(_Chart):
    """One stacked bar per category, a legend for the series."""

    def __init__(self, title: str, series: Sequence[str], parent: QWidget | None = None) -> None:
        super().__init__(title, parent)
        self.series = tuple(series)
        self.bars: tuple[tuple[str, tuple[int, ...]], ...] = ()

    def set_bars(self, bars: Sequence[tuple[str, Sequence[int]]]) -> None:
        self.bars = tuple((name, tuple(values)) for name, values in bars)
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        try:
            plot = self._frame(painter)
            top = _nice_max(max((sum(v) for _, v in self.bars), default=0))
            self._axis(painter, plot, top)
            x = self.width() - 8
            for name, colour in reversed(list(zip(self.series, SERIES_COLOURS))):
                width = painter.fontMetrics().horizontalAdvance(name) + 18
                x -= width
                painter.fillRect(QRectF(x, 8, 10, 10), colour)
                painter.setPen(self.palette().text().color())
                painter.drawText(QRectF(x + 13, 4, width, 18), Qt.AlignmentFlag.AlignLeft, name)
            if not self.bars:
                painter.drawText(plot, Qt.AlignmentFlag.AlignCenter, "no results in this window")
                return
            step = plot.width() / len(self.bars)
            bar = min(step * 0.6, 80)
            for i, (name, values) in enumerate(self.bars):
                x0 = plot.left() + i * step + (step - bar) / 2
                y = plot.bottom()
                for value, colour in zip(values, SERIES_COLOURS):
                    h = plot.height() * value / top
                    painter.fillRect(QRectF(x0, y - h, bar, h), colour)
                    y -= h
                painter.setPen(self.palette().text().color())
                painter.drawText(
                    QRectF(plot.left() + i * step, plot.bottom() + 4, step, 16),
                    Qt.AlignmentFlag.AlignHCenter,
                    name,
                )
                painter.drawText(
                    QRectF(plot.left() + i * step, y - 18, step, 16),
                    Qt.AlignmentFlag.AlignHCenter,
                    f"{sum(values):,}",
                )
        finally:
            painter.end()
