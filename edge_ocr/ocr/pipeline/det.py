"""DB text detection: pre-processing and post-processing (numpy/OpenCV only).

The steps follow PaddleOCR 2.x's `tools/infer/predict_det.py` (the reference pipeline), so every
engine fed by this module must reproduce the reference's boxes with its settings
(`PipelineOptions.reference()`); our defaults differ in the crop margin and the reported box only.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import pyclipper

#: ImageNet normalisation, what PP-OCRv4's detector and PP-OCRv6's own inference.yml use
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DetOptions:
    limit_side_len: int = 960
    limit_type: str = "max"  # "max": the longer side is at most limit; "min": the shorter at least
    thresh: float = 0.3
    box_thresh: float = 0.6
    #: how far DB's shrunk text kernel is grown (its area x ratio / perimeter) for the crop that
    #: recognition reads. PaddleOCR grows it by 1.5; a wider margin reads receipts better.
    unclip_ratio: float = 1.7
    #: how far it is grown for the box reported to users: tighter, like hand-drawn ground truth
    #: (None: report the crop's box, as PaddleOCR does). Both were chosen over the SROIE and
    #: ICDAR 2015 dev sets (docs/BENCHMARKS.md, "Crop margin and reported boxes").
    outline_unclip_ratio: float | None = 1.2
    max_candidates: int = 1000
    use_dilation: bool = False
    min_size: int = 3
    #: for dot-matrix and inkjet print (a declared print profile), detection reads the image with
    #: its dots joined by a min filter min(h, w) / `dot_join_per_px` pixels wide (0: never; PP-OCRv4's
    #: detector finds dotted lines as they are, PP-OCRv6's sets it)
    dot_join_per_px: float = 0.0
    #: per-channel normalisation of the BGR image scaled to [0, 1]: (x - mean) / std
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    #: normalise in float64 and round to float32 at the end (RapidOCR) instead of in float32
    #: throughout (PaddleOCR): the network sees inputs one float32 step apart otherwise
    normalise_float64: bool = False
    #: how a box's 4 corners are put clockwise from top-left: "sum-diff" (PaddleOCR 2.x: the
    #: smallest x+y first) or "x-sort" (RapidOCR: the two leftmost, by y, first)
    point_order: str = "sum-diff"
    #: reading order of the boxes: "paddle" (PaddleOCR 2.x: by top-left y then x, neighbours
    #: within 10 px swapped by x) or "rows" (RapidOCR 3.x: rows cut where the sorted top-left y
    #: jumps by 10 px or more, then x within a row)
    reading_order: str = "paddle"


def join_dots(img: np.ndarray, per_px: float) -> np.ndarray:
    """Dark print grown by a square min filter about `min(h, w) / per_px` pixels wide, so that the
    separate dots of dot-matrix and inkjet print touch and the detector sees strokes (PP-OCRv6's
    detector misses about a sixth of dot-matrix lines otherwise). Only the detector reads it: crops
    are cut from the image itself."""
    k = max(2, int(round(min(img.shape[:2]) / per_px)))
    return cv2.erode(img, np.ones((k, k), np.uint8))


@dataclass(frozen=True)
class DetBox:
    """One detected text region: `quad` is the crop recognition reads (the kernel grown by
    `unclip_ratio`), `outline` the box reported (grown by `outline_unclip_ratio`, so it lies inside
    the quad), both clockwise from top-left in source pixels."""

    quad: np.ndarray
    outline: np.ndarray
    score: float


@dataclass(frozen=True)
class DetInput:
    tensor: np.ndarray  # (1, 3, H, W) float32
    src_hw: tuple[int, int]
    resized_hw: tuple[int, int]


def resize_for_det(img: np.ndarray, opts: DetOptions) -> tuple[np.ndarray, tuple[int, int]]:
    h, w = img.shape[:2]
    if opts.limit_type == "max":
        ratio = float(opts.limit_side_len) / max(h, w) if max(h, w) > opts.limit_side_len else 1.0
    else:
        ratio = float(opts.limit_side_len) / min(h, w) if min(h, w) < opts.limit_side_len else 1.0
    resize_h = max(int(round(int(h * ratio) / 32) * 32), 32)
    resize_w = max(int(round(int(w * ratio) / 32) * 32), 32)
    if (resize_h, resize_w) != (h, w):
        img = cv2.resize(img, (resize_w, resize_h))
    return img, (resize_h, resize_w)


def preprocess(img_bgr: np.ndarray, opts: DetOptions) -> DetInput:
    resized, hw = resize_for_det(img_bgr, opts)
    dtype = np.float64 if opts.normalise_float64 else np.float32
    mean = np.array(opts.mean, dtype=dtype)
    std = np.array(opts.std, dtype=dtype)
    x = (resized.astype(np.float32) * (1.0 / 255.0) - mean) / std
    tensor = np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)
    return DetInput(tensor=tensor, src_hw=(img_bgr.shape[0], img_bgr.shape[1]), resized_hw=hw)


def _mini_box(contour: np.ndarray) -> tuple[np.ndarray, float]:
    rect = cv2.minAreaRect(contour)
    pts = sorted(cv2.boxPoints(rect).tolist(), key=lambda p: p[0])
    i1, i4 = (0, 1) if pts[1][1] > pts[0][1] else (1, 0)
    i2, i3 = (2, 3) if pts[3][1] > pts[2][1] else (3, 2)
    box = np.array([pts[i1], pts[i2], pts[i3], pts[i4]], dtype=np.float32)
    return box, float(min(rect[1]))


def _box_score_fast(bitmap: np.ndarray, box: np.ndarray) -> float:
    h, w = bitmap.shape[:2]
    box = box.copy()
    xmin = int(np.clip(np.floor(box[:, 0].min()), 0, w - 1))
    xmax = int(np.clip(np.ceil(box[:, 0].max()), 0, w - 1))
    ymin = int(np.clip(np.floor(box[:, 1].min()), 0, h - 1))
    ymax = int(np.clip(np.ceil(box[:, 1].max()), 0, h - 1))
    mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), dtype=np.uint8)
    box[:, 0] -= xmin
    box[:, 1] -= ymin
    cv2.fillPoly(mask, box.reshape(1, -1, 2).astype(np.int32), 1)
    return float(cv2.mean(bitmap[ymin : ymax + 1, xmin : xmax + 1], mask)[0])


def _unclip(box: np.ndarray, ratio: float) -> list:
    contour = box.reshape(-1, 1, 2).astype(np.float32)
    area = abs(cv2.contourArea(contour))
    length = cv2.arcLength(contour, True)
    if length == 0:
        return []
    distance = area * ratio / length
    offset = pyclipper.PyclipperOffset()
    offset.AddPath(box.tolist(), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    return offset.Execute(distance)


def order_points_clockwise(pts: np.ndarray) -> np.ndarray:
    rect = np.zeros((4, 2), dtype=np.float32)
    s = pts.sum(axis=1)
    rect[0] = pts[np.argmin(s)]
    rect[2] = pts[np.argmax(s)]
    tmp = np.delete(pts, (np.argmin(s), np.argmax(s)), axis=0)
    diff = np.diff(np.array(tmp), axis=1)
    rect[1] = tmp[np.argmin(diff)]
    rect[3] = tmp[np.argmax(diff)]
    return rect


def order_points_x_sort(pts: np.ndarray) -> np.ndarray:
    """RapidOCR's corner order (imutils): the two leftmost points by y give top-left and
    bottom-left, the two rightmost top-right and bottom-right."""
    x_sorted = pts[np.argsort(pts[:, 0]), :]
    left, right = x_sorted[:2, :], x_sorted[2:, :]
    tl, bl = left[np.argsort(left[:, 1]), :]
    tr, br = right[np.argsort(right[:, 1]), :]
    return np.array([tl, tr, br, bl], dtype=np.float32)


_POINT_ORDERS = {"sum-diff": order_points_clockwise, "x-sort": order_points_x_sort}


def _grown_quad(
    kernel: np.ndarray, ratio: float, min_side: float, det_in: DetInput, point_order: str = "sum-diff"
) -> np.ndarray | None:
    """The kernel box grown by `ratio` (DB's unclip), in source pixels, clockwise; None when the
    offset splits it or it is too small."""
    expanded = _unclip(kernel, ratio)
    if len(expanded) != 1:
        return None
    box, sside = _mini_box(np.array(expanded[0]).reshape(-1, 1, 2).astype(np.float32))
    if sside < min_side:
        return None
    (rh, rw), (src_h, src_w) = det_in.resized_hw, det_in.src_hw
    box[:, 0] = np.clip(np.round(box[:, 0] / rw * src_w), 0, src_w - 1)
    box[:, 1] = np.clip(np.round(box[:, 1] / rh * src_h), 0, src_h - 1)
    box = _POINT_ORDERS[point_order](box)
    width = int(np.linalg.norm(box[0] - box[1]))
    height = int(np.linalg.norm(box[0] - box[3]))
    return box if width > 3 and height > 3 else None


def postprocess(prob_map: np.ndarray, det_in: DetInput, opts: DetOptions) -> list[DetBox]:
    """Turn the (1, 1, H, W) probability map into text regions in source pixels."""
    rh, rw = det_in.resized_hw
    pred = prob_map[0, 0, :rh, :rw]
    mask = (pred > opts.thresh).astype(np.uint8)
    if opts.use_dilation:
        mask = cv2.dilate(mask, np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(mask * 255, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    out: list[DetBox] = []
    for contour in contours[: opts.max_candidates]:
        points, sside = _mini_box(contour)
        if sside < opts.min_size:
            continue
        score = _box_score_fast(pred, points)
        if opts.box_thresh > score:
            continue
        quad = _grown_quad(points, opts.unclip_ratio, opts.min_size + 2, det_in, opts.point_order)
        if quad is None:
            continue
        outline = None
        if opts.outline_unclip_ratio is not None:
            outline = _grown_quad(points, opts.outline_unclip_ratio, 0, det_in, opts.point_order)
        out.append(DetBox(quad=quad, outline=quad if outline is None else outline, score=score))
    return out


def sort_reading_order(boxes: list[np.ndarray], how: str = "paddle") -> list[int]:
    """Indices of `boxes` top-to-bottom, left-to-right (lines within 10 px count as one row);
    `how` is DetOptions.reading_order."""
    if how == "rows":
        return _sort_rows(boxes)
    order = sorted(range(len(boxes)), key=lambda i: (boxes[i][0][1], boxes[i][0][0]))
    for i in range(len(order) - 1):
        for j in range(i, -1, -1):
            a, b = boxes[order[j]], boxes[order[j + 1]]
            if abs(b[0][1] - a[0][1]) < 10 and b[0][0] < a[0][0]:
                order[j], order[j + 1] = order[j + 1], order[j]
            else:
                break
    return order


def _sort_rows(boxes: list[np.ndarray], row_gap: float = 10) -> list[int]:
    """RapidOCR 3.x's sorted_boxes: stable by top-left y; a new row where consecutive y differ by
    `row_gap` or more; then by x within each row."""
    if not boxes:
        return []
    tops = np.array([b[0] for b in boxes], dtype=np.float32)
    by_y = np.argsort(tops[:, 1], kind="stable")
    rows = np.concatenate([[0], np.cumsum((np.diff(tops[by_y, 1]) >= row_gap).astype(np.int32))])
    return [int(by_y[i]) for i in np.lexsort((tops[by_y, 0], rows))]


def crop_quad(img: np.ndarray, box) -> np.ndarray:  # box: 4 points, any sequence or array
    """Perspective-crop a quad (PaddleOCR's get_rotate_crop_image); tall crops (h/w >= 1.5) are
    turned to read left to right."""
    pts = np.asarray(box, dtype=np.float32)
    w = int(max(np.linalg.norm(pts[0] - pts[1]), np.linalg.norm(pts[2] - pts[3])))
    h = int(max(np.linalg.norm(pts[0] - pts[3]), np.linalg.norm(pts[1] - pts[2])))
    w, h = max(w, 1), max(h, 1)
    dst = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    m = cv2.getPerspectiveTransform(pts, dst)
    crop = cv2.warpPerspective(img, m, (w, h), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC)
    if crop.shape[0] / float(crop.shape[1]) >= 1.5:
        crop = np.rot90(crop)
    return np.ascontiguousarray(crop)
