"""Whole-image preparation before detection (numpy/OpenCV only): RapidOCR 3.x resizes every
image into side-length bounds first and pads wide or short images with black above and below.
Our own pipelines read the image as given (ImageOptions() does nothing); the boxes found on the
prepared image are mapped back to the source image's pixels."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge_ocr.errors import InputError


@dataclass(frozen=True)
class ImageOptions:
    #: an image whose longer side exceeds this is shrunk to it (sides rounded to multiples of 32)
    max_side_len: int | None = None
    #: then one whose shorter side is below this is enlarged to it (sides rounded to multiples of 32)
    min_side_len: int | None = None
    #: for detection only, an image at most `pad_min_height` high or more than
    #: `pad_width_height_ratio` times as wide as high gets black bands above and below
    pad_min_height: int | None = None
    pad_width_height_ratio: float | None = None


@dataclass(frozen=True)
class Prepared:
    """The image the stages read, and how to map its pixels back to the source image's."""

    image: np.ndarray
    src_hw: tuple[int, int]
    ratio_h: float = 1.0  # source pixels per prepared pixel
    ratio_w: float = 1.0
    top: int = 0  # black rows added above

    @property
    def identity(self) -> bool:
        return self.ratio_h == 1.0 and self.ratio_w == 1.0 and self.top == 0

    def to_source(self, box: np.ndarray) -> np.ndarray:
        """A quad on the prepared image in source pixels, clipped to [0, size] (RapidOCR's
        map_boxes_to_original). Returned as given when nothing was changed."""
        if self.identity:
            return box
        out = np.array(box, dtype=np.float32, copy=True)
        out[:, 1] -= self.top
        out[:, 0] *= self.ratio_w
        out[:, 1] *= self.ratio_h
        out = np.where(out < 0, 0, out)
        h, w = self.src_hw
        out[:, 0] = np.where(out[:, 0] > w, w, out[:, 0])
        out[:, 1] = np.where(out[:, 1] > h, h, out[:, 1])
        return out.astype(np.float32)


def _resize_to_32(img: np.ndarray, ratio: float) -> tuple[np.ndarray, float, float]:
    h, w = img.shape[:2]
    resize_h = int(round(int(h * ratio) / 32) * 32)
    resize_w = int(round(int(w * ratio) / 32) * 32)
    if resize_h <= 0 or resize_w <= 0:
        raise InputError(f"an image of {w}x{h} pixels is too thin to read (it would shrink to nothing)")
    return cv2.resize(img, (resize_w, resize_h)), h / resize_h, w / resize_w


def within_bounds(img: np.ndarray, opts: ImageOptions) -> Prepared:
    """RapidOCR's resize_image_within_bounds. Like it, when both steps apply only the second
    step's ratio is kept (its box mapping is off then; reproduced, it is the reference)."""
    src_hw = (img.shape[0], img.shape[1])
    ratio_h = ratio_w = 1.0
    if opts.max_side_len is not None and max(img.shape[:2]) > opts.max_side_len:
        img, ratio_h, ratio_w = _resize_to_32(img, float(opts.max_side_len) / max(img.shape[:2]))
    if opts.min_side_len is not None and min(img.shape[:2]) < opts.min_side_len:
        img, ratio_h, ratio_w = _resize_to_32(img, float(opts.min_side_len) / min(img.shape[:2]))
    return Prepared(image=img, src_hw=src_hw, ratio_h=ratio_h, ratio_w=ratio_w)


def pad_for_detection(prepared: Prepared, opts: ImageOptions) -> Prepared:
    """RapidOCR's apply_vertical_padding: black bands above and below a short or wide image."""
    if opts.pad_min_height is None:
        return prepared
    img = prepared.image
    h, w = img.shape[:2]
    ratio = opts.pad_width_height_ratio
    too_wide = ratio is not None and ratio != -1 and w / h > ratio
    if not (h <= opts.pad_min_height or too_wide):
        return prepared
    if ratio is None or ratio == -1:
        new_h = opts.pad_min_height * 2
    else:
        new_h = max(int(w / ratio), opts.pad_min_height) * 2
    pad = int(abs(new_h - h) / 2)
    padded = cv2.copyMakeBorder(img, pad, pad, 0, 0, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    return Prepared(
        image=padded, src_hw=prepared.src_hw, ratio_h=prepared.ratio_h, ratio_w=prepared.ratio_w, top=pad
    )
