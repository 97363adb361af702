"""Word-space recovery for Latin text from the CTC alignment.

PP-OCRv4's Chinese-English recognizer often drops the spaces between Latin words
("YONGFATTENTERPRISE"). Each decoded character occupies a run of CTC frames; between words the
distance from one character's centre to the next is clearly longer than the line's typical
glyph pitch. We put a space where that distance is at least `gap_ratio` times the pitch (the
median distance on the line) and the blank run between the two characters is at least
`min_blank_frames` long. Lines that are not mostly Latin (CJK) are left as they are, and so are
spaces the recognizer did produce. The parameters were chosen on generated text and the dev
sets (`python -m studies.spacing_study`), see docs/BENCHMARKS.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge_ocr.ocr.pipeline.rec import Decoded


@dataclass(frozen=True)
class SpacingOptions:
    enabled: bool = True
    gap_ratio: float = 1.4
    min_blank_frames: float = 2.0
    #: a space also needs a run of ink-free columns in the crop at least this many times the crop
    #: height wide (0 disables the image check)
    min_gap_height: float = 0.3
    min_latin_ratio: float = 0.8  # share of non-space characters that must be Latin/ASCII
    min_chars: int = 4  # shorter lines have no reliable pitch
    #: never recover a space before these (typographic: "BAHRU,", "RETAIL.") or after these
    no_space_before: str = ",."
    no_space_after: str = "("
    #: never a space (recovered or read) between a digit, a point or colon and a digit: decimals
    #: and times ("18.77", "8:13:39", not "18. 77", "8: 13: 39"); beside a hyphen or slash between
    #: digits (dates, codes: "2025-05-10", "11/2027") none is recovered, and one read before the
    #: separator alone goes ("2025 -05"); "10 - 20", read so, stays
    no_space_in_numbers: bool = True
    #: on Latin lines, read full-width forms (U+FF01-FF5E, e.g. "（" "：" "，") as their ASCII
    #: characters: the Chinese-English recognizer often picks them for Latin punctuation
    fold_full_width: bool = True
    #: a recovered space also needs the recognizer's space class to reach this probability somewhere
    #: in the gap (0: not asked; PP-OCRv4 rarely reads spaces, PP-OCRv6 reads most of them itself)
    min_space_prob: float = 0.0


# Typical advance widths relative to a digit, so that pairs with narrow or wide glyphs are judged
# fairly in proportional fonts ("6.37" is not "6.3 7"; "L: M" is a space after a narrow colon).
_WIDTHS: dict[str, float] = {
    **dict.fromkeys(".,:;'`!|", 0.4),
    **dict.fromkeys('iIjlf()[]{}"/\\-', 0.6),
    **dict.fromkeys("rt", 0.7),
    **dict.fromkeys("mwMW@%&", 1.4),
}


def glyph_width(ch: str) -> float:
    if ch in _WIDTHS:
        return _WIDTHS[ch]
    if ch.isupper():
        return 1.15
    return 1.0


def _is_latin(ch: str) -> bool:
    return ord(ch) < 0x250 or 0x1E00 <= ord(ch) <= 0x1EFF


def fold_full_width(text: str) -> str:
    """Full-width ASCII forms (U+FF01-FF5E) as ASCII, one character for one (frames stay aligned)."""
    return "".join(chr(ord(c) - 0xFEE0) if 0xFF01 <= ord(c) <= 0xFF5E else c for c in text)


def latin_text(decoded: Decoded, opts: SpacingOptions) -> str:
    """The decoded text with full-width forms folded when the folded line is mostly Latin."""
    if not opts.enabled or not opts.fold_full_width:
        return decoded.text
    folded = fold_full_width(decoded.text)
    return folded if folded != decoded.text and mostly_latin(folded, opts.min_latin_ratio) else decoded.text


def mostly_latin(text: str, min_ratio: float) -> bool:
    chars = [c for c in text if not c.isspace()]
    if not chars:
        return False
    return sum(_is_latin(c) for c in chars) / len(chars) >= min_ratio


def ink_free_columns(crop: np.ndarray) -> np.ndarray:
    """Boolean per column of the crop: True where the middle band holds no ink (Otsu-binarised;
    ink is the minority class, dark on light or light on dark)."""
    import cv2

    gray = crop if crop.ndim == 2 else cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    h = gray.shape[0]
    band = gray[int(h * 0.2) : max(int(h * 0.8), int(h * 0.2) + 1)]
    _, binary = cv2.threshold(band, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    ink = binary if binary.mean() < 0.5 else 1 - binary
    return ink.sum(axis=0) <= max(1, int(0.03 * band.shape[0]))


def _longest_run(flags: np.ndarray) -> int:
    best = run = 0
    for f in flags:
        run = run + 1 if f else 0
        best = max(best, run)
    return best


def ink_gap(empty: np.ndarray, centre_a: float, centre_b: float, px_per_frame: float) -> int:
    """The widest run of ink-free columns (`ink_free_columns`) between two glyph centres given in
    CTC frames, in pixels of the crop."""
    x0 = int((centre_a + 0.5) * px_per_frame)
    x1 = int((centre_b + 0.5) * px_per_frame)
    return _longest_run(empty[max(x0, 0) : max(x1, x0 + 1)])


@dataclass(frozen=True)
class GlyphGeometry:
    """The non-space characters of a reading with their CTC frames, as word-space recovery (and the
    confidence calibration, which judges its decisions) sees them."""

    glyphs: list[str]
    explicit: list[bool]  # the recognizer read a space right after this character
    starts: np.ndarray  # first frame of each character
    ends: np.ndarray  # last frame
    centres: np.ndarray
    dist: np.ndarray  # per adjacent pair: centre distance over what the two glyphs need side by side


def glyph_geometry(text: str, frames: Sequence[tuple[int, int]]) -> GlyphGeometry:
    """`text` (one frame span per character, spaces included) as `GlyphGeometry`."""
    spans: list[tuple[int, int]] = []
    glyphs: list[str] = []
    explicit: list[bool] = []
    for ch, fr in zip(text, frames, strict=True):
        if ch == " ":
            if explicit:
                explicit[-1] = True
            continue
        spans.append(fr)
        glyphs.append(ch)
        explicit.append(False)
    starts = np.array([f[0] for f in spans], dtype=np.float64)
    ends = np.array([f[1] for f in spans], dtype=np.float64)
    centres = (starts + ends) / 2.0
    w = np.array([glyph_width(ch) for ch in glyphs], dtype=np.float64)
    dist = np.diff(centres) / ((w[:-1] + w[1:]) / 2.0) if len(glyphs) > 1 else np.zeros(0)
    return GlyphGeometry(glyphs, explicit, starts, ends, centres, dist)


def space_after(decoded: Decoded, opts: SpacingOptions, crop: np.ndarray | None = None) -> list[bool] | None:
    """For each adjacent pair of non-space characters, whether a space belongs between them.
    None when the line is left as read (disabled, too short, not Latin, no alignment)."""
    if not opts.enabled or not decoded.frames or len(decoded.frames) != len(decoded.text):
        return None
    text = latin_text(decoded, opts)
    if not mostly_latin(text, opts.min_latin_ratio):
        return None
    geo = glyph_geometry(text, decoded.frames)
    if len(geo.glyphs) < 2:
        return None
    glyphs, explicit, centres, dist = geo.glyphs, geo.explicit, geo.centres, geo.dist
    blanks = geo.starts[1:] - geo.ends[:-1] - 1.0
    decided = list(explicit[:-1])  # spaces the recognizer read are kept (measured: removing any costs)
    blocked = [False] * len(decided)
    if opts.no_space_in_numbers:
        for k in range(1, len(glyphs) - 1):
            if not (glyphs[k - 1].isdigit() and glyphs[k + 1].isdigit()):
                continue
            if glyphs[k] in ".:":
                decided[k - 1] = decided[k] = False
                blocked[k - 1] = blocked[k] = True
            elif glyphs[k] in "-/" and not (explicit[k - 1] and explicit[k]):
                if not explicit[k]:  # "2025 -05": a space before the separator alone is never so written
                    decided[k - 1] = False
                blocked[k - 1] = blocked[k] = True
    if len(glyphs) < opts.min_chars:
        return decided
    plain = dist[~np.array(explicit[:-1])]
    if len(plain) < 2:
        return decided
    pitch = float(np.median(plain))
    if pitch <= 0:
        return decided
    glyph_at = [i for i, c in enumerate(text) if c != " "]  # index in the reading of each glyph
    space_prob = decoded.space_after if len(decoded.space_after) == len(text) else None
    empty = None
    use_image = (
        crop is not None and opts.min_gap_height > 0 and decoded.px_per_frame > 0 and crop.shape[0] > 4
    )
    for k in range(len(dist)):
        if decided[k] or blocked[k] or dist[k] < opts.gap_ratio * pitch or blanks[k] < opts.min_blank_frames:
            continue
        if glyphs[k + 1] in opts.no_space_before or glyphs[k] in opts.no_space_after:
            continue
        if (
            opts.min_space_prob > 0
            and space_prob is not None
            and space_prob[glyph_at[k]] < opts.min_space_prob
        ):
            continue
        if use_image:
            if empty is None:
                empty = ink_free_columns(crop)  # type: ignore[arg-type]
            gap = ink_gap(empty, centres[k], centres[k + 1], decoded.px_per_frame)
            if gap < opts.min_gap_height * crop.shape[0]:  # type: ignore[union-attr]
                continue
        decided[k] = True
    return decided


def recover_spaces(decoded: Decoded, opts: SpacingOptions, crop: np.ndarray | None = None) -> str:
    """The decoded text with recovered word spaces (single spaces, no leading/trailing)."""
    text = latin_text(decoded, opts)
    decided = space_after(decoded, opts, crop)
    if decided is None:
        return text
    chars = [c for c in text if c != " "]
    out = [chars[0]]
    for k, ch in enumerate(chars[1:]):
        if decided[k]:
            out.append(" ")
        out.append(ch)
    return "".join(out)
