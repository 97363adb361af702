"""The capture image with its line boxes: zoom (wheel, +/-, 0 to fit), pan (drag), boxes coloured by
confidence or by verdict; clicking a box selects its line."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QPointF, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QImage,
    QImageReader,
    QKeyEvent,
    QPainter,
    QPen,
    QPixmap,
    QPolygonF,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QGraphicsPixmapItem,
    QGraphicsPolygonItem,
    QGraphicsScene,
    QGraphicsSimpleTextItem,
    QGraphicsView,
    QWidget,
)

from edge_ocr.types import TextLine

HIGH, LOW = 0.85, 0.6
CONFIDENCE_COLOURS = (QColor("#1f9d3a"), QColor("#e08a00"), QColor("#d62728"))  # high, medium, low
VERDICT_COLOURS = {"pass": QColor("#1f9d3a"), "fail": QColor("#d62728"), "unreadable": QColor("#7f7f7f")}


FIELD_COLOUR = QColor("#ff7f0e")  # a field's boxes, apart from every confidence and verdict colour


def read_image(file: Path) -> QImage:
    """The first image in a file (a null image when it cannot be read). Python opens the file, so
    a name that is not UTF-8 (which has no QString form) opens too, exactly that file."""
    try:
        data = file.read_bytes()
    except OSError:
        return QImage()
    buffer = QBuffer()
    buffer.setData(QByteArray(data))
    buffer.open(QIODevice.OpenModeFlag.ReadOnly)
    try:
        return QImageReader(buffer).read()
    finally:
        buffer.close()


class ColourMode(str, enum.Enum):
    CONFIDENCE = "confidence"
    VERDICT = "verdict"


def confidence_colour(confidence: float) -> QColor:
    if confidence >= HIGH:
        return CONFIDENCE_COLOURS[0]
    return CONFIDENCE_COLOURS[1] if confidence >= LOW else CONFIDENCE_COLOURS[2]


class ImageView(QGraphicsView):
    lineClicked = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.SmoothPixmapTransform)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setBackgroundBrush(QBrush(QColor("#2b2b2b")))
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.colour_mode = ColourMode.CONFIDENCE
        self._boxes: list[QGraphicsPolygonItem] = []
        self._lines: tuple[TextLine, ...] = ()
        self._verdict: str | None = None
        self._selected = -1
        self._fit = True
        self._field_items: list[QGraphicsPolygonItem] = []

    # -- content ---------------------------------------------------------------------------------

    def show_result(
        self,
        image_path: str | None,
        lines: Sequence[TextLine],
        verdict: str | None,
        size: tuple[int, int] | None,
        image_file: Path | None = None,
    ) -> None:
        """Show an image and its lines. `image_path`: its name for people; `image_file`: the file
        to open (by the exact bytes of its name), else `image_path`."""
        scene = self.scene()
        scene.clear()
        self._boxes = []
        self._field_items = []
        self._lines = tuple(lines)
        self._verdict = verdict
        self._selected = -1
        pixmap = QPixmap()
        file = image_file if image_file is not None else (Path(image_path) if image_path else None)
        if file is not None:
            image = read_image(file)
            if not image.isNull():
                pixmap = QPixmap.fromImage(image)
        if pixmap.isNull():
            w, h = size if size and all(size) else (640, 480)
            scene.addRect(0, 0, w, h, QPen(QColor("#777")), QBrush(QColor("#444")))
            note = QGraphicsSimpleTextItem(f"image not available\n{image_path or '(none stored)'}")
            note.setBrush(QBrush(QColor("#ddd")))
            note.setPos(12, 12)
            scene.addItem(note)
        else:
            scene.addItem(QGraphicsPixmapItem(pixmap))
        for i, line in enumerate(self._lines):
            item = QGraphicsPolygonItem(QPolygonF([QPointF(x, y) for x, y in line.box]))
            item.setData(0, i)
            item.setToolTip(f"{line.text}  ({line.confidence:.2f})")
            scene.addItem(item)
            self._boxes.append(item)
        self._style_boxes()
        scene.setSceneRect(scene.itemsBoundingRect())
        self._fit = True
        self.fit()

    def set_colour_mode(self, mode: ColourMode) -> None:
        self.colour_mode = mode
        self._style_boxes()

    def box_colour(self, index: int) -> QColor:
        if self.colour_mode is ColourMode.VERDICT:
            return VERDICT_COLOURS.get(self._verdict or "", QColor("#1f5fbf"))
        return confidence_colour(self._lines[index].confidence)

    def _style_boxes(self) -> None:
        for i, item in enumerate(self._boxes):
            colour = self.box_colour(i)
            selected = i == self._selected
            pen = QPen(colour, 4 if selected else 2)
            pen.setCosmetic(True)
            item.setPen(pen)
            fill = QColor(colour)
            fill.setAlpha(90 if selected else 25)
            item.setBrush(QBrush(fill))
            item.setZValue(2 if selected else 1)

    def select_line(self, index: int) -> None:
        """Highlight line `index`'s box (and bring it into view)."""
        self._selected = index
        self._style_boxes()
        if 0 <= index < len(self._boxes):
            self.ensureVisible(self._boxes[index], 20, 20)

    def show_field(self, boxes: Sequence[Sequence[tuple[float, float]]]) -> None:
        """Outline a field's boxes (the lines it was read from) over the line boxes, and bring
        them into view; no boxes clears the outline."""
        scene = self.scene()
        for item in self._field_items:
            scene.removeItem(item)
        self._field_items = []
        for box in boxes:
            item = QGraphicsPolygonItem(QPolygonF([QPointF(x, y) for x, y in box]))
            pen = QPen(FIELD_COLOUR, 5)
            pen.setCosmetic(True)
            item.setPen(pen)
            fill = QColor(FIELD_COLOUR)
            fill.setAlpha(70)
            item.setBrush(QBrush(fill))
            item.setZValue(3)
            scene.addItem(item)
            self._field_items.append(item)
        if self._field_items:
            self.ensureVisible(self._field_items[0], 20, 20)

    @property
    def field_outlines(self) -> list[list[tuple[float, float]]]:
        """The outlined field boxes (for tests and accessibility)."""
        out = []
        for item in self._field_items:
            poly = item.polygon()
            out.append([(poly.at(i).x(), poly.at(i).y()) for i in range(poly.count())])
        return out

    @property
    def selected_line(self) -> int:
        return self._selected

    # -- zoom and pan ----------------------------------------------------------------------------

    def fit(self) -> None:
        rect = self.scene().sceneRect()
        if not rect.isEmpty():
            self.fitInView(rect, Qt.AspectRatioMode.KeepAspectRatio)

    def zoom(self, factor: float) -> None:
        self._fit = False
        self.scale(factor, factor)

    @property
    def zoom_factor(self) -> float:
        return self.transform().m11()

    def wheelEvent(self, event: QWheelEvent) -> None:
        self.zoom(1.25 if event.angleDelta().y() > 0 else 0.8)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if key in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            self.zoom(1.25)
        elif key == Qt.Key.Key_Minus:
            self.zoom(0.8)
        elif key == Qt.Key.Key_0:
            self._fit = True
            self.fit()
        else:
            super().keyPressEvent(event)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self._fit:
            self.fit()

    def mousePressEvent(self, event) -> None:
        item = self.itemAt(event.position().toPoint())
        while item is not None and not isinstance(item, QGraphicsPolygonItem):
            item = item.parentItem()
        if isinstance(item, QGraphicsPolygonItem) and item.data(0) is not None:
            index = int(item.data(0))
            self.select_line(index)
            self.lineClicked.emit(index)
        super().mousePressEvent(event)
