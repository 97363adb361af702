"""CTC text recognition: pre-processing, batching by width, and decoding (numpy/OpenCV only)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


@dataclass(frozen=True)
class RecOptions:
    image_height: int = 48
    min_width: int = 320  # PaddleOCR's rec_image_shape width: batches are at least this wide
    max_width: int | None = 3200  # very long crops are squeezed to this width (None: never)
    batch_size: int = 6
    drop_score: float = 0.5
    #: how crops are sorted by aspect ratio before batching (numpy's argsort kind): "stable", or
    #: "quicksort" (RapidOCR, numpy's default), which may order equal ratios differently
    sort_kind: str = "stable"
    #: a line's score as RapidOCR computes it: each character's probability rounded to this many
    #: decimals, their mean rounded again (None: the plain mean)
    score_decimals: int | None = None
    #: drop lines whose text is only whitespace (U+3000 too), as RapidOCR does (detection only)
    drop_blank: bool = False


@dataclass(frozen=True)
class Decoded:
    text: str
    confidence: float
    #: per decoded character: (first frame, last frame) in the CTC output, for spacing analysis
    frames: tuple[tuple[int, int], ...] = ()
    n_frames: int = 0
    #: width of one CTC frame in the crop's own pixels (0 when unknown)
    px_per_frame: float = 0.0
    #: the least probable character's probability (a line is right only if every character is)
    min_confidence: float = 0.0
    #: per decoded character: the 3 likeliest classes over its frames, (character, probability),
    #: most likely first; patterns.py re-decodes invalid dates from these
    alternatives: tuple[tuple[tuple[str, float], ...], ...] = ()
    #: per decoded character, for the confidence calibration: its probability (the mean and
    #: minimum above are over these); and in the frames up to the next character (the last one:
    #: to the end of the line) the space class's highest probability and the highest probability
    #: that any other character was there (1 - blank - space: a character that may have been missed)
    char_confidences: tuple[float, ...] = ()
    space_after: tuple[float, ...] = ()
    missed_after: tuple[float, ...] = ()


def load_dictionary(path: Path) -> list[str]:
    """PaddleOCR's character list: blank, the dictionary's characters, then a space.

    One entry per line, lines split on "\n" only and only a trailing "\r" removed (the files may
    have CRLF endings): entries are whitespace too (PP-OCRv6's U+3000), and str.splitlines() would
    also split on \x1c-\x1e, \x85, U+2028/9, shifting every later class by one."""
    text = path.read_bytes().decode("utf-8")
    lines = text.split("\n")
    if lines and lines[-1] == "":  # the newline ending the last entry
        lines.pop()
    chars = [line[:-1] if line.endswith("\r") else line for line in lines]
    return ["blank", *chars, " "]


def rounded_score(confidences: tuple[float, ...], decimals: int) -> float:
    """RapidOCR 3.x's line score: the mean of the characters' probabilities rounded to
    `decimals`, itself rounded (0 for an empty line)."""
    rounded = [round(c, decimals) for c in confidences] or [0.0]
    return float(np.mean(rounded).round(decimals))


def resize_norm(img: np.ndarray, height: int, target_w: int) -> np.ndarray:
    """Resize a crop to `height` keeping its ratio, normalise to [-1, 1], pad right to `target_w`."""
    h, w = img.shape[:2]
    resized_w = min(target_w, int(math.ceil(height * (w / float(h)))))
    resized_w = max(resized_w, 1)
    resized = cv2.resize(img, (resized_w, height)).astype(np.float32)
    resized = resized.transpose(2, 0, 1) / 255.0
    resized -= 0.5
    resized /= 0.5
    out = np.zeros((3, height, target_w), dtype=np.float32)
    out[:, :, :resized_w] = resized
    return out


def frame_width_px(crop_w: int, crop_h: int, input_w: int, n_frames: int, height: int) -> float:
    """How many of the crop's own pixels one CTC frame covers, for a crop fed in a batch of width
    `input_w` (the crop is resized to `height` and padded on the right)."""
    resized_w = max(1, min(input_w, int(math.ceil(height * (crop_w / float(crop_h))))))
    return (input_w / float(n_frames)) * (crop_w / float(resized_w))


def batches_by_width(crops: list[np.ndarray], opts: RecOptions) -> list[tuple[list[int], np.ndarray]]:
    """Group crops sorted by aspect ratio into batches; each batch is padded to its widest member."""
    ratios = [c.shape[1] / float(c.shape[0]) for c in crops]
    order = list(np.argsort(np.array(ratios), kind=opts.sort_kind))  # type: ignore[call-overload]
    out = []
    for beg in range(0, len(order), opts.batch_size):
        idx = [int(i) for i in order[beg : beg + opts.batch_size]]
        max_ratio = max([opts.min_width / opts.image_height] + [ratios[i] for i in idx])
        target_w = int(opts.image_height * max_ratio)
        if opts.max_width is not None:
            target_w = min(target_w, opts.max_width)
        batch = np.stack([resize_norm(crops[i], opts.image_height, target_w) for i in idx])
        out.append((idx, batch))
    return out


def ctc_decode(probs: np.ndarray, charset: list[str]) -> list[Decoded]:
    """Greedy CTC decoding of (N, T, C) probabilities: collapse repeats, drop blanks (index 0)."""
    idx = probs.argmax(axis=2)
    conf = probs.max(axis=2)
    space = probs[:, :, len(charset) - 1] if probs.shape[2] >= len(charset) else np.zeros(idx.shape)
    results = []
    n_frames = probs.shape[1]
    for b in range(probs.shape[0]):
        seq = idx[b]
        keep = np.ones(len(seq), dtype=bool)
        keep[1:] = seq[1:] != seq[:-1]
        keep &= seq != 0
        chars, confs, frames, alts = [], [], [], []
        positions = np.nonzero(keep)[0]
        for p in positions:
            c = int(seq[p])
            if c >= len(charset):
                continue
            end = p
            while end + 1 < len(seq) and seq[end + 1] == c:
                end += 1
            chars.append(charset[c])
            confs.append(float(conf[b, p]))
            run = probs[b, p : end + 1].max(axis=0)
            top = np.argpartition(run, -3)[-3:]
            alts.append(
                tuple(
                    (charset[k], float(run[k]))
                    for k in sorted(top, key=lambda k: -run[k])
                    if 0 < k < len(charset)
                )
            )
            frames.append((int(p), int(end)))
        text = "".join(chars)
        bounds = [f[0] for f in frames[1:]] + [n_frames]
        spaces = tuple(
            float(space[b, f[1] + 1 : nxt].max()) if nxt > f[1] + 1 else 0.0 for f, nxt in zip(frames, bounds)
        )
        missed = tuple(
            float((1.0 - probs[b, f[1] + 1 : nxt, 0] - space[b, f[1] + 1 : nxt]).max())
            if nxt > f[1] + 1
            else 0.0
            for f, nxt in zip(frames, bounds)
        )
        results.append(
            Decoded(
                text=text,
                confidence=float(np.mean(confs)) if confs else 0.0,
                min_confidence=float(np.min(confs)) if confs else 0.0,
                frames=tuple(frames),
                n_frames=n_frames,
                alternatives=tuple(alts),
                char_confidences=tuple(confs),
                space_after=spaces,
                missed_after=missed,
            )
        )
    return results
