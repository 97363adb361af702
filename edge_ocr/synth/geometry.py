"""Quads: from rectangles, through affine transforms, and perspective crops of a quad."""

from __future__ import annotations

import cv2
import numpy as np

from edge_ocr.types import Quad


def rect_quad(x0: float, y0: float, x1: float, y1: float) -> Quad:
    """Clockwise from top-left."""
    return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))


def transform_quad(quad: Quad, matrix: np.ndarray) -> Quad:
    """Apply a 2x3 affine matrix (as from cv2.getRotationMatrix2D) to the four points."""
    pts = np.asarray(quad, dtype=np.float64) @ matrix[:, :2].T + matrix[:, 2]
    return tuple((float(x), float(y)) for x, y in pts)  # type: ignore[return-value]


def crop_quad(image: np.ndarray, quad: Quad) -> np.ndarray:
    """Perspective crop of `quad` to an upright rectangle (PaddleOCR's get_rotate_crop_image): the
    output is as wide as the longer top/bottom edge and as tall as the longer left/right edge; crops
    much taller than wide are turned to read left to right."""
    pts = np.asarray(quad, dtype=np.float32)
    w = max(1, round(max(np.linalg.norm(pts[0] - pts[1]), np.linalg.norm(pts[3] - pts[2]))))
    h = max(1, round(max(np.linalg.norm(pts[0] - pts[3]), np.linalg.norm(pts[1] - pts[2]))))
    dst = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    m = cv2.getPerspectiveTransform(pts, dst)
    out = cv2.warpPerspective(image, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    if h / w >= 1.5:
        out = np.rot90(out).copy()
    return out
