"""Dot-matrix print found without being told: a cheap check on the detector's own boxes, no I/O.

PP-OCRv6's detector reads dot-matrix and inkjet print well once the dots are joined
(`det.join_dots`, what a declared dot-matrix print does), but where the dots stand apart it leaves
lines out: it breaks a line into boxes of a character or two, runs several dotted lines into one
block, or finds nothing where the dots are. In every case, text-sized ink is left outside the boxes
found. Left on `auto`, the pipeline checks that (`check_boxes`, `DetCheck.suspect`) after detecting
on the image as it is, and only on a suspect image does it detect again with the dots joined; it
keeps that second detection when it leaves at most half of that ink out (`prefer_joined`) and runs
no lines of the first together (`runs_lines_together`), and the image is then read as dot-matrix
print. Plain labels have their text
inside the boxes and pass the check without a second detection.

Tests of the dots themselves (round blobs on a regular pitch, grey-level dot centres, periodic
texture, ink that breaks up at a stricter threshold) were tried first and separated neither our
generated labels nor the dev sets: coder dots are often 2 to 3 pixels wide and touch, and image
noise, JPEG blocks and small solid type give the same statistics (docs/BENCHMARKS.md, "Dot-matrix
print without being told").
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class DotOptions:
    #: on `auto`, look for dotted print the detector missed; False: `auto` never joins dots
    enabled: bool = True
    #: the ink is looked at with the image's longer side at most this (the detector's own limit)
    max_side: int = 960
    #: the image is suspect when at least this share of its text-sized ink lies outside every box
    #: (this one with at most `few_boxes` line boxes, as a label: one short dotted line of four
    #: can be 5% of the ink beside a bold title; pages and receipts leave more ink out) ...
    min_unexplained: float = 0.1
    min_unexplained_few: float = 0.04
    few_boxes: int = 12
    #: ... but less than this share (most of the ink outside the boxes is a scene's clutter, not
    #: text left out), unless no box was found at all
    max_unexplained: float = 0.9
    #: the joined detection is kept when it leaves at most this share of the ink the first one left
    #: out ...
    joined_unexplained: float = 0.5
    #: ... and no box holding two line boxes of the first (on a label, `few_boxes` line boxes or
    #: fewer: each at least `row_length` of its length) that overlap by less than `row_overlap` of
    #: the lower one's height (lines one above the other run together; pieces of a dotted line
    #: are shorter)
    row_overlap: float = 0.5
    row_length: float = 0.33
    #: a box is a line when its long side is at least this times its short side
    line_aspect: float = 2.0
    #: ink components of text size: at least this many pixels (per 480 pixels of the shorter image
    #: side: not specks of noise), at most this share of the shorter side and at most this
    #: elongated (not rules, borders or barcode bars) ...
    min_ink_px: float = 4.0
    max_ink_side: float = 0.25
    max_ink_aspect: float = 6.0
    #: ... and not a solid bar: filling this share of its box while this elongated
    bar_fill: float = 0.6
    bar_aspect: float = 3.0


@dataclass(frozen=True)
class DetCheck:
    """What the check saw in one detection's boxes."""

    boxes: int
    line_boxes: int  # clearly wider than tall
    unexplained: float  # share of the text-sized ink outside every box (0 without such ink)
    elapsed_ms: float

    def suspect(self, opts: DotOptions) -> bool:
        """Whether the image may hold dotted print the detector missed: text-sized ink outside
        the boxes found."""
        least = opts.min_unexplained_few if self.line_boxes <= opts.few_boxes else opts.min_unexplained
        if self.unexplained < least:
            return False
        return self.boxes == 0 or self.unexplained < opts.max_unexplained


def _text_ink(gray: np.ndarray, opts: DotOptions) -> np.ndarray:
    """Dark ink of text size (a local threshold), as a boolean mask."""
    block = max(15, (min(gray.shape[:2]) // 10) | 1)
    ink = cv2.adaptiveThreshold(gray, 1, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV, block, 12)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    w, h, area = stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT], stats[:, cv2.CC_STAT_AREA]
    big, small = np.maximum(w, h), np.maximum(np.minimum(w, h), 1)
    bar = (area >= opts.bar_fill * w * h) & (big >= opts.bar_aspect * small)
    keep = (
        (area >= opts.min_ink_px * max(1.0, min(gray.shape[:2]) / 480))
        & (big <= opts.max_ink_side * min(gray.shape[:2]))
        & (big <= opts.max_ink_aspect * small)
        & ~bar
    )
    keep[0] = False  # the background
    return keep[labels]


def check_boxes(image: np.ndarray, quads: Sequence[np.ndarray], opts: DotOptions | None = None) -> DetCheck:
    """How the detector's boxes (`quads`, in `image`'s pixels) cover the image's text."""
    opts = opts or DotOptions()
    t0 = time.perf_counter()
    lines = 0
    for quad in quads:
        _, (w, h), _ = cv2.minAreaRect(np.asarray(quad, dtype=np.float32).reshape(-1, 2))
        lines += max(w, h) >= opts.line_aspect * min(w, h)
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    scale = min(1.0, opts.max_side / max(gray.shape[:2]))
    if scale < 1.0:
        gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ink = _text_ink(gray, opts)
    total = int(ink.sum())
    unexplained = 0.0
    if total:
        covered = np.zeros(gray.shape[:2], dtype=np.uint8)
        polygons = [
            (np.asarray(q, dtype=np.float32).reshape(-1, 2) * scale).round().astype(np.int32) for q in quads
        ]
        if polygons:
            cv2.fillPoly(covered, polygons, 1)
        unexplained = float((ink & (covered == 0)).sum()) / total
    return DetCheck(
        boxes=len(quads),
        line_boxes=int(lines),
        unexplained=round(unexplained, 4),
        elapsed_ms=(time.perf_counter() - t0) * 1000,
    )


def _rows_apart(a: np.ndarray, b: np.ndarray, overlap: float) -> bool:
    """Whether boxes `a` and `b` stand one above the other (their heights overlap by less than
    `overlap` of the lower box's height)."""
    ay0, ay1 = float(a[:, 1].min()), float(a[:, 1].max())
    by0, by1 = float(b[:, 1].min()), float(b[:, 1].max())
    shared = min(ay1, by1) - max(ay0, by0)
    return shared < overlap * min(ay1 - ay0, by1 - by0)


def runs_lines_together(
    first: Sequence[np.ndarray], joined: Sequence[np.ndarray], opts: DotOptions | None = None
) -> bool:
    """Whether a box of the joined detection holds the centres of two line boxes (`line_aspect`)
    of the first detection that stand one above the other: joining ran lines together (dense solid
    print, as on receipts), rather than joining a line's dots or characters (pieces of a line, as
    the two dots of a colon, may stand one above the other)."""
    opts = opts or DotOptions()
    boxes = []
    for quad in first:
        box = np.asarray(quad, dtype=np.float32).reshape(-1, 2)
        _, (w, h), _ = cv2.minAreaRect(box)
        if max(w, h) >= opts.line_aspect * min(w, h):
            boxes.append(box)
    centres = [tuple(map(float, b.mean(axis=0))) for b in boxes]
    # a label's dotted line can be found in pieces; a page's or a receipt's lines are all lines
    row_length = opts.row_length if len(boxes) <= opts.few_boxes else 0.0
    for quad in joined:
        poly = np.asarray(quad, dtype=np.float32).reshape(-1, 1, 2)
        _, (w, h), _ = cv2.minAreaRect(poly)
        long = [
            b
            for b, c in zip(boxes, centres)
            if cv2.pointPolygonTest(poly, c, False) >= 0
            and max(cv2.minAreaRect(b)[1]) >= row_length * max(w, h)
        ]
        for i, a in enumerate(long):
            if any(_rows_apart(a, b, opts.row_overlap) for b in long[i + 1 :]):
                return True
    return False


def prefer_joined(first: DetCheck, joined: DetCheck, opts: DotOptions | None = None) -> bool:
    """Whether the detection on the dots-joined image boxed the ink the first one left out: it
    found boxes, and leaves out at most `joined_unexplained` of what the first left out. (The
    pipeline also refuses it when it `runs_lines_together`.)"""
    opts = opts or DotOptions()
    if joined.boxes == 0 or joined.unexplained >= first.unexplained:
        return False
    return joined.unexplained <= opts.joined_unexplained * first.unexplained
