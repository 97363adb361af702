"""0/180 degree text-line orientation classification (numpy/OpenCV only)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge_ocr.ocr.pipeline.rec import resize_norm


@dataclass(frozen=True)
class ClsOptions:
    image_height: int = 48
    image_width: int = 192
    batch_size: int = 6
    thresh: float = 0.9


def batches(crops: list[np.ndarray], opts: ClsOptions) -> list[tuple[list[int], np.ndarray]]:
    ratios = [c.shape[1] / float(c.shape[0]) for c in crops]
    order = [int(i) for i in np.argsort(np.array(ratios), kind="stable")]
    out = []
    for beg in range(0, len(order), opts.batch_size):
        idx = order[beg : beg + opts.batch_size]
        out.append((idx, np.stack([resize_norm(crops[i], opts.image_height, opts.image_width) for i in idx])))
    return out


def is_upside_down(probs: np.ndarray, thresh: float) -> list[bool]:
    """(N, 2) probabilities for labels ('0', '180') -> whether to turn each crop."""
    labels = probs.argmax(axis=1)
    scores = probs.max(axis=1)
    return [bool(lab == 1 and s > thresh) for lab, s in zip(labels, scores)]


def rotate_180(img: np.ndarray) -> np.ndarray:
    return cv2.rotate(img, cv2.ROTATE_180)
