"""Where lines sit on the page: axis-aligned geometry, rows of lines side by side, the text block's
frame. Pure, no I/O."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from edge_ocr.types import TextLine


@dataclass(frozen=True)
class Placed:
    """One OCR line with its axis-aligned extent; `height` is the quad's side length (the font
    size, also on a tilted line)."""

    index: int  # in the OcrResult's lines
    line: TextLine
    x0: float
    y0: float
    x1: float
    y1: float
    height: float

    @property
    def text(self) -> str:
        return self.line.text

    @property
    def cy(self) -> float:
        return (self.y0 + self.y1) / 2

    @property
    def cx(self) -> float:
        return (self.x0 + self.x1) / 2


@dataclass(frozen=True)
class Row:
    """Lines side by side (overlapping vertically), left to right."""

    index: int  # top to bottom
    lines: tuple[Placed, ...]
    text: str = ""  # the lines' text, left to right

    def __post_init__(self) -> None:
        if not self.text:
            object.__setattr__(self, "text", " ".join(p.text.strip() for p in self.lines if p.text.strip()))

    @property
    def y0(self) -> float:
        return min(p.y0 for p in self.lines)

    @property
    def y1(self) -> float:
        return max(p.y1 for p in self.lines)

    @property
    def x0(self) -> float:
        return min(p.x0 for p in self.lines)

    @property
    def x1(self) -> float:
        return max(p.x1 for p in self.lines)

    @property
    def height(self) -> float:
        return max(p.height for p in self.lines)


@dataclass(frozen=True)
class Page:
    """A page's rows and the frame of its text (the lines' extent, so scan margins do not count)."""

    rows: tuple[Row, ...]
    x0: float
    y0: float
    x1: float
    y1: float
    line_height: float  # the median line height

    @property
    def width(self) -> float:
        return max(self.x1 - self.x0, 1.0)

    @property
    def height(self) -> float:
        return max(self.y1 - self.y0, 1.0)

    def rel_y(self, y: float) -> float:
        return min(max((y - self.y0) / self.height, 0.0), 1.0)

    def rel_x(self, x: float) -> float:
        return min(max((x - self.x0) / self.width, 0.0), 1.0)


def _placed(index: int, line: TextLine) -> Placed:
    xs = [p[0] for p in line.box]
    ys = [p[1] for p in line.box]
    (x0, y0), _, _, (x3, y3) = line.box
    side = ((x3 - x0) ** 2 + (y3 - y0) ** 2) ** 0.5
    return Placed(index, line, min(xs), min(ys), max(xs), max(ys), max(side, 1.0))


def layout(lines: Sequence[TextLine]) -> Page:
    """Group lines into rows: a line joins a row when their vertical extents overlap by at least
    half the smaller height (a label and its value on one printed row are separate detections)."""
    placed = sorted(
        (_placed(i, line) for i, line in enumerate(lines) if line.text.strip()), key=lambda p: p.cy
    )
    groups: list[list[Placed]] = []
    for p in placed:
        if groups:
            row = groups[-1]
            top, bottom = min(q.y0 for q in row), max(q.y1 for q in row)
            overlap = min(bottom, p.y1) - max(top, p.y0)
            smaller = min(p.y1 - p.y0, statistics.median(q.y1 - q.y0 for q in row))
            if overlap >= 0.5 * max(smaller, 1.0) and not any(_side_overlap(p, q) for q in row):
                row.append(p)
                continue
        groups.append([p])
    rows = tuple(Row(i, tuple(sorted(g, key=lambda p: p.x0))) for i, g in enumerate(groups))
    if not placed:
        return Page((), 0.0, 0.0, 1.0, 1.0, 1.0)
    return Page(
        rows=rows,
        x0=min(p.x0 for p in placed),
        y0=min(p.y0 for p in placed),
        x1=max(p.x1 for p in placed),
        y1=max(p.y1 for p in placed),
        line_height=statistics.median(p.height for p in placed),
    )


def _side_overlap(a: Placed, b: Placed) -> bool:
    """Two lines covering the same columns are above each other, not one row."""
    overlap = min(a.x1, b.x1) - max(a.x0, b.x0)
    return overlap > 0.5 * min(a.x1 - a.x0, b.x1 - b.x0)
