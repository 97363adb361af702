"""Render one text line into an ink mask with its exact ground-truth rectangle."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from edge_ocr.synth.fonts import FontFace, font_for_cap_height


@dataclass(frozen=True)
class LineArt:
    """Ink coverage in [0, 1] of one line; the whole mask is the line's ground-truth rectangle."""

    text: str
    mask: np.ndarray  # float32, shape (h, w)
    cap_height: float

    @property
    def width(self) -> int:
        return int(self.mask.shape[1])

    @property
    def height(self) -> int:
        return int(self.mask.shape[0])


def line_padding(cap_height: float) -> int:
    """Margin kept around the ink inside the ground-truth box."""
    return max(2, round(0.15 * cap_height))


def render_text_line(text: str, face: FontFace, cap_height: float) -> LineArt:
    """Draw `text` with the font sized to `cap_height`. The box spans the ink horizontally and from the
    cap line (or higher ink) to the baseline (or lower ink), plus padding."""
    font = font_for_cap_height(face, cap_height)
    tx0, ty0, tx1, ty1 = font.getbbox(text, anchor="ls")
    _, hy0, _, _ = font.getbbox("H", anchor="ls")
    x0, x1 = tx0, tx1
    y0, y1 = min(ty0, hy0), max(ty1, 0)
    pad = line_padding(cap_height)
    w, h = int(x1 - x0) + 2 * pad, int(y1 - y0) + 2 * pad
    img = Image.new("L", (w, h), 0)
    ImageDraw.Draw(img).text((pad - x0, pad - y0), text, font=font, fill=255, anchor="ls")
    return LineArt(text=text, mask=np.asarray(img, dtype=np.float32) / 255.0, cap_height=cap_height)
