"""Dot-matrix and inkjet coder print: characters drawn as grids of round dots.

A line is rasterised with a TrueType font onto a coarse grid (7 rows of cap height, like a 5x7 coder
font), then every "on" cell is drawn as a round dot. Dots can be missing, jittered, uneven (inkjet)
and spread with satellite droplets.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageDraw

from edge_ocr.synth.fonts import FontFace, font_for_cap_height
from edge_ocr.synth.render import LineArt, line_padding

CAP_ROWS = 7  # dot rows from baseline to cap line
_SUPER = 10  # pixels per grid cell when rasterising the glyphs
_SHIFT = 4  # cv2 sub-pixel bits for dot centres
_ON_THRESHOLD = 0.45


@dataclass(frozen=True)
class DotStyle:
    missing_dots: float = 0.0  # probability that a dot is not printed (broken print head / nozzle)
    inkjet: bool = False  # uneven, spread dots with satellite droplets instead of crisp round dots
    radius: float = 0.42  # dot radius as a fraction of the dot pitch
    rows: int = CAP_ROWS  # dot rows from baseline to cap line (7 as a 5x7 coder font, 9 or more finer)


def dot_grid(text: str, face: FontFace, rows: int = CAP_ROWS) -> tuple[np.ndarray, int]:
    """Boolean grid (rows, cols) of dots for `text` and the row index of the baseline.
    Regular-weight fonts give one-dot strokes; bold fonts give blobs."""
    font = font_for_cap_height(face, rows * _SUPER)
    x0, y0, x1, y1 = font.getbbox(text, anchor="ls")
    above = max(rows, -(y0 // _SUPER))  # rows above the baseline
    below = max(0, -(-y1 // _SUPER))  # rows below it (descenders, parentheses)
    cols = max(1, -(-(x1 - x0) // _SUPER))
    img = Image.new("L", (cols * _SUPER, (above + below) * _SUPER), 0)
    ImageDraw.Draw(img).text((-x0, above * _SUPER), text, font=font, fill=255, anchor="ls")
    arr = np.asarray(img, dtype=np.float32) / 255.0
    cover = cv2.resize(arr, (cols, above + below), interpolation=cv2.INTER_AREA)
    return cover > _ON_THRESHOLD, above


def render_dot_line(
    text: str, face: FontFace, cap_height: float, rng: np.random.Generator, style: DotStyle
) -> LineArt:
    """Draw `text` as dots whose cap height is about `cap_height` pixels. The box spans the dots
    horizontally and from the cap row (or higher dots) to the baseline row (or lower dots), plus padding."""
    grid, base = dot_grid(text, face, style.rows)
    pitch = cap_height / style.rows
    radius = style.radius * pitch * (1.15 if style.inkjet else 1.0)
    on_rows = np.nonzero(grid.any(axis=1))[0]
    on_cols = np.nonzero(grid.any(axis=0))[0]
    if on_cols.size == 0:  # only spaces
        on_rows, on_cols = np.array([base - style.rows, base - 1]), np.array([0])
    r0 = min(int(on_rows[0]), base - style.rows)
    r1 = max(int(on_rows[-1]), base - 1)
    c0, c1 = int(on_cols[0]), int(on_cols[-1])
    pad = line_padding(cap_height)
    edge = pad + radius
    w = round((c1 - c0) * pitch + 2 * edge)
    h = round((r1 - r0) * pitch + 2 * edge)
    mask = np.zeros((h, w), np.float32)
    scale = 1 << _SHIFT
    jitter = 0.12 if style.inkjet else 0.05
    for r, c in zip(*np.nonzero(grid)):
        if style.missing_dots > 0 and rng.random() < style.missing_dots:
            continue
        cx = edge + (c - c0) * pitch + rng.normal(0, jitter * pitch)
        cy = edge + (r - r0) * pitch + rng.normal(0, jitter * pitch)
        rad = radius * (rng.uniform(0.8, 1.15) if style.inkjet else rng.uniform(0.95, 1.05))
        ink = rng.uniform(0.75, 1.0) if style.inkjet else 1.0
        _dot(mask, cx, cy, rad, ink, scale)
        if style.inkjet and rng.random() < 0.06:  # satellite droplet next to the dot
            ang = rng.uniform(0, 2 * np.pi)
            d = rad * rng.uniform(1.0, 1.6)
            _dot(mask, cx + d * np.cos(ang), cy + d * np.sin(ang), rad * 0.3, ink, scale)
    if style.inkjet:
        mask = cv2.GaussianBlur(mask, (0, 0), max(0.4, 0.15 * pitch))
        mask = np.clip(mask * 1.15, 0.0, 1.0)
    return LineArt(text=text, mask=mask, cap_height=cap_height)


def _dot(mask: np.ndarray, cx: float, cy: float, rad: float, ink: float, scale: int) -> None:
    h, w = mask.shape
    cx, cy = min(max(cx, rad), w - 1 - rad), min(max(cy, rad), h - 1 - rad)  # stay inside the box
    centre = (round(cx * scale), round(cy * scale))
    cv2.circle(mask, centre, max(1, round(rad * scale)), float(ink), -1, cv2.LINE_AA, _SHIFT)
