"""Quads: from rectangles, through affine transforms, and perspective crops of a quad."""

from __future__ import annotations

import numpy as np

from edge_ocr.types import Quad


def rect_quad(x0: float, y0: float, x1: float, y1: float) -> Quad:
    """Clockwise from top-left."""
    return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))


def transform_quad(quad: Quad, matrix: np.ndarray) -> Quad:
    """Apply a 2x3 affine matrix (as from cv2.getRotationMatrix2D) to the four points."""
    pts = np.asarray(quad, dtype=np.float64) @ matrix[:, :2].T + matrix[:, 2]
    return tuple((float(x), float(y)) for x, y in pts)  # type: ignore[return-value]
