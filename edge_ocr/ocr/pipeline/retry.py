"""Print-aware variants of a line crop: read up front for a declared print, and as low-confidence retries.

A line read below `threshold` is read again from variant crops and the reading with the best
confidence is kept. The variants target what our users scan: dot-matrix and inkjet print
(dots joined by a grey-level closing or a blur), low contrast (local contrast normalisation),
tight crops (re-padded), and upside-down lines. All variants of all weak lines go through the
recognizer in one batch call; the per-image budget (a number of re-reads relative to the
line count, `RetryOptions.budget`) bounds the work.

A print profile (`PrintProfile`, chosen per recipe or station, or `--print` on the command line)
says what the print is. It decides which variants are read for every line whatever its
confidence (`RetryOptions.first`, not cut by the budget: the profile asked for them) and in
which order the low-confidence retries try the others. `auto` is for unknown print: nothing up
front, every variant as a retry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import cv2
import numpy as np

from edge_ocr.types import PrintProfile

Variant = Callable[[np.ndarray], np.ndarray]


def _gray(crop: np.ndarray) -> np.ndarray:
    return crop if crop.ndim == 2 else cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)


def _dark_on_light(gray: np.ndarray) -> bool:
    _, binary = cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return binary.mean() >= 0.5  # background (1) is the majority


def join_dots(crop: np.ndarray) -> np.ndarray:
    """Grow the ink so dot-matrix dots touch: a grey-level erosion (dark ink) or dilation (light ink)."""
    gray = _gray(crop)
    k = max(2, int(round(gray.shape[0] / 14)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    out = cv2.erode(gray, kernel) if _dark_on_light(gray) else cv2.dilate(gray, kernel)
    return cv2.cvtColor(out, cv2.COLOR_GRAY2BGR)


def blur_dots(crop: np.ndarray) -> np.ndarray:
    """Blur dots into strokes, then restore contrast."""
    gray = _gray(crop)
    sigma = max(0.8, gray.shape[0] / 18)
    out = cv2.GaussianBlur(gray, (0, 0), sigma)
    out = cv2.normalize(out, None, 0, 255, cv2.NORM_MINMAX)
    return cv2.cvtColor(out, cv2.COLOR_GRAY2BGR)


def local_contrast(crop: np.ndarray) -> np.ndarray:
    """CLAHE: evens out uneven light and lifts low-contrast print."""
    gray = _gray(crop)
    tiles = max(1, gray.shape[1] // max(gray.shape[0], 1))
    out = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(1, min(tiles, 16))).apply(gray)
    return cv2.cvtColor(out, cv2.COLOR_GRAY2BGR)


def repad(crop: np.ndarray) -> np.ndarray:
    """Give a tight crop a margin of replicated border."""
    pad = max(2, crop.shape[0] // 6)
    return cv2.copyMakeBorder(crop, pad, pad, pad, pad, cv2.BORDER_REPLICATE)


def rotate_180(crop: np.ndarray) -> np.ndarray:
    return cv2.rotate(crop, cv2.ROTATE_180)


VARIANTS: dict[str, Variant] = {
    "join_dots": join_dots,
    "blur_dots": blur_dots,
    "local_contrast": local_contrast,
    "repad": repad,
    "rotate_180": rotate_180,
}


@dataclass(frozen=True)
class ProfileVariants:
    first: tuple[str, ...]  # read for every line, beside the crop itself
    retries: tuple[str, ...]  # then, for lines still below the threshold, in this order


# blurred dots first: over IIIT 5K, the dot-matrix set and generated dot-matrix lines, trying it
# before joined dots leaves more lines right, most of all when the budget allows one variant
ALL_VARIANTS = ("blur_dots", "join_dots", "local_contrast", "repad", "rotate_180")

PROFILES: dict[PrintProfile, ProfileVariants] = {
    PrintProfile.AUTO: ProfileVariants((), ALL_VARIANTS),
    PrintProfile.PLAIN: ProfileVariants((), ("repad", "local_contrast", "rotate_180")),
    PrintProfile.DOT_MATRIX: ProfileVariants(
        ("blur_dots", "join_dots"), ("repad", "local_contrast", "rotate_180")
    ),
    PrintProfile.INKJET: ProfileVariants(
        ("blur_dots",), ("join_dots", "repad", "local_contrast", "rotate_180")
    ),
    PrintProfile.LOW_CONTRAST: ProfileVariants(
        ("local_contrast",), ("repad", "join_dots", "blur_dots", "rotate_180")
    ),
}


def parse_print(value: str | PrintProfile) -> PrintProfile:
    """A print profile from its name; ValueError naming the known ones otherwise."""
    try:
        return PrintProfile(value)
    except ValueError:
        known = ", ".join(p.value for p in PrintProfile)
        raise ValueError(f"unknown print {value!r} (known: {known})") from None


#: variants that keep every pixel where it was: word gaps are measured on the original crop
SAME_GEOMETRY = frozenset({"join_dots", "blur_dots", "local_contrast"})


@dataclass(frozen=True)
class RetryOptions:
    enabled: bool = True
    threshold: float = 0.9  # lines read below this confidence are retried
    #: and so are lines whose least probable character is below this (a confident line with one doubtful
    #: character: dot-matrix 8/0, P/F)
    min_char_threshold: float = 0.6
    #: ... when at least this share of their characters are digits (codes and dates, not words)
    min_char_digits: float = 0.4
    variants: tuple[str, ...] = ALL_VARIANTS  # retries, in order
    first: tuple[str, ...] = ()  # read for every line whatever its confidence; not budgeted
    #: a reading from a same-geometry variant keeps the word spaces the crop's own reading had
    spaces_from_crop: bool = True
    #: re-reads of line crops per image, as a multiple of the image's line count, and never fewer
    #: than one line's worth of every retry variant (a lone line may try them all): deterministic,
    #: unlike a time budget, which read less on a loaded machine. Up-front variants are not counted.
    budget: float = 4.0
    min_gain: float = 0.02  # a variant must beat the first reading by this much confidence
    poor: float = 0.6  # below this the first reading is not trusted to count characters
    keep_chars: float = 0.8  # otherwise a variant must keep this share of its characters
    #: the print these options were made for (`for_print`), None: not declared
    profile: PrintProfile | None = None

    def __post_init__(self) -> None:
        unknown = [v for v in (*self.first, *self.variants) if v not in VARIANTS]
        if unknown:
            raise ValueError(f"unknown retry variants {unknown}; known: {sorted(VARIANTS)}")

    def budget_reads(self, lines: int) -> int:
        """How many variant crops the low-confidence retries of an image with `lines` lines may read."""
        if not self.enabled or self.budget <= 0 or not self.variants:
            return 0
        return max(len(self.variants), int(round(self.budget * lines)))

    def for_print(self, profile: PrintProfile | str) -> RetryOptions:
        """These options with the variants `profile` reads up front and retries."""
        chosen = PROFILES[parse_print(profile)]
        return replace(self, first=chosen.first, variants=chosen.retries, profile=parse_print(profile))


def is_weak(decoded, opts: RetryOptions) -> bool:  # decoded: rec.Decoded
    """Whether a line is re-read: a low mean confidence, or one doubtful character in a code."""
    if decoded.confidence < opts.threshold:
        return True
    if decoded.min_confidence >= opts.min_char_threshold:
        return False
    chars = [c for c in decoded.text if not c.isspace()]
    return bool(chars) and sum(c.isdigit() for c in chars) >= opts.min_char_digits * len(chars)


def _chars(text: str) -> int:
    return sum(1 for c in text if not c.isspace())


def better(candidate, current, first, opts: RetryOptions) -> bool:  # Decoded x3
    """Whether a variant's reading should replace the current best. Confidence is a mean over
    characters, so dropping doubtful characters raises it: unless the first reading was poor, a
    variant must keep most of its characters."""
    if not candidate.text or candidate.confidence < current.confidence + opts.min_gain:
        return False
    return first.confidence < opts.poor or _chars(candidate.text) >= opts.keep_chars * _chars(first.text)


def glyph_gaps(decoded, crop: np.ndarray) -> list[float] | None:  # decoded: rec.Decoded
    """Per adjacent pair of `decoded`'s non-space characters, the widest run of ink-free columns of
    `crop` between their centres, in pixels; None without an alignment to the crop."""
    from edge_ocr.ocr.pipeline.spacing import ink_free_columns, ink_gap

    # every whitespace character is a gap here (U+3000 too), as with_spaces_of counts glyphs
    frames = [f for c, f in zip(decoded.text, decoded.frames) if not c.isspace()]
    if decoded.px_per_frame <= 0 or len(decoded.frames) != len(decoded.text) or len(frames) < 2:
        return None
    empty = ink_free_columns(crop)
    centres = [(a + b) / 2 for a, b in frames]
    return [float(ink_gap(empty, a, b, decoded.px_per_frame)) for a, b in zip(centres, centres[1:])]


def with_spaces_of(text: str, own: str, gaps: list[float] | None = None, wide: float = 1.5) -> str:
    """`text`, read from a variant that keeps the crop's geometry, with the word spaces of `own`, the
    crop's own reading, added when both read the same number of characters: the variant supplies the
    characters, the crop the gaps between words (blurring or growing dots narrows those gaps). With
    `gaps` (`glyph_gaps` of the variant's reading), a space is only added where the crop's ink-free
    gap is at least `wide` times the line's median gap between characters."""
    glyphs = [c for c in text if not c.isspace()]
    if len(glyphs) != sum(1 for c in own if not c.isspace()):
        return text

    def spaces(s: str) -> set[int]:  # k: a space follows the k-th glyph
        out, k = set(), 0
        for c in s:
            if c.isspace():
                if k:
                    out.add(k)
            else:
                k += 1
        return out

    added = spaces(own) - spaces(text) - {len(glyphs)}
    if gaps is not None and len(gaps) == len(glyphs) - 1:
        typical = float(np.median(gaps))
        added = {k for k in added if gaps[k - 1] >= wide * max(typical, 1.0)}
    keep = spaces(text) | added
    return "".join(c + (" " if k + 1 in keep and k + 1 < len(glyphs) else "") for k, c in enumerate(glyphs))
