"""Generic label patterns: confusable correction where the shape of a token leaves no doubt.

Without a recipe we still know two things about label text: the captions coders print (LOT,
EXP, MFG, S/N ...) are words, and dates are digits. A token is changed only when, after swapping
look-alike characters (O/0, I/1, S/5, B/8, Z/2, see `edge_ocr.rules.confusables`), it becomes exactly
one of those captions or a well-formed date (month 1-12, day 1-31). Free text is never touched:
a token that does not fit a pattern exactly is left as read. Every change is reported so the raw
reading is kept beside the corrected one.

A token with the shape of a date whose value cannot be one (month 47, day 32, year 2826) is
re-decoded from the recognizer's own probabilities: every digit may become one of the likelier
classes the CTC output gave at that character's frames (`Decoded.alternatives`), and the most
probable combination that makes a valid date is kept. Dot-matrix print confuses 0, 6, 8 and 9
in just this way; no fixed substitution table is involved.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from edge_ocr.rules.confusables import DIGIT_TO_LETTER, LETTER_TO_DIGIT, correct_to_mask

CAPTIONS = (
    "LOT", "EXP", "MFG", "MFD", "BATCH", "SN", "S/N", "SER", "BB", "PROD", "USE", "BY", "BEST",
    "BEFORE", "REF", "GTIN", "QTY", "NET", "WT", "DATE", "CODE", "NO",
)  # fmt: skip

# date shapes: 9 = digit; month/day positions are checked after correction
DATE_MASKS = (
    "99/99", "99/9999", "99-99", "99-9999", "99.99", "99.9999",
    "99/99/99", "99/99/9999", "99.99.9999", "99-99-9999", "9999-99-99", "9999/99/99", "9999.99.99",
)  # fmt: skip

#: label captions after which the value is printed one space away ("EXP: 09/2020", "EXP. 06/20"):
#: a reading that glues them ("EXP:09/2020") gets the space back. Receipt words (DATE, NO, QTY ...)
#: are not here: their layouts vary.
SPACED_CAPTIONS = ("LOT", "EXP", "MFG", "MFD", "BATCH", "SN", "S/N", "SER", "BB", "BY", "PROD", "GTIN")

_TOKEN = re.compile(r"[^\s:]+")
_CONFUSABLE = set(LETTER_TO_DIGIT) | set(DIGIT_TO_LETTER)


@dataclass(frozen=True)
class PatternOptions:
    enabled: bool = True
    captions: tuple[str, ...] = CAPTIONS
    date_masks: tuple[str, ...] = DATE_MASKS
    redecode_dates: bool = True  # re-decode impossible dates from the CTC alternatives
    min_alternative: float = 0.02  # a digit's alternative needs at least this probability
    years: tuple[int, int] = (1900, 2099)  # four-digit years outside this are impossible
    #: put a space between a label caption's colon or point and the value glued to it
    space_after_captions: tuple[str, ...] = ()


@dataclass(frozen=True)
class PatternResult:
    text: str
    changes: tuple[str, ...] = ()


def _caption(token: str, captions: tuple[str, ...]) -> tuple[str, tuple[str, ...]] | None:
    if token.upper() in captions or not any(c.isdigit() for c in token):
        return None
    mask = "".join("A" if c.isalnum() else c for c in token)
    fixed = correct_to_mask(token, mask)
    if fixed is None or not fixed.changed or fixed.value.upper() not in captions:
        return None
    return fixed.value, fixed.changes


def _plausible_date(value: str, mask: str) -> bool:
    parts = re.split(r"[/.-]", value)
    shape = re.split(r"[/.-]", mask)
    if len(shape[0]) == 4:  # year first: Y M D
        month, day = int(parts[1]), int(parts[2]) if len(parts) > 2 else 1
    elif len(parts) == 2:  # M/YY or M/YYYY
        month, day = int(parts[0]), 1
    else:  # D/M/Y or M/D/Y: both fields must be a day, one a month
        a, b = int(parts[0]), int(parts[1])
        return 1 <= min(a, b) <= 12 and 1 <= max(a, b) <= 31
    return 1 <= month <= 12 and 1 <= day <= 31


def _plausible_year(value: str, mask: str, years: tuple[int, int]) -> bool:
    for part, shape in zip(re.split(r"[/.-]", value), re.split(r"[/.-]", mask)):
        if len(shape) == 4 and not years[0] <= int(part) <= years[1]:
            return False
    return True


def _date_mask(token: str, masks: tuple[str, ...]) -> str | None:
    """The date mask `token` (digits and separators) has the shape of, if any."""
    for mask in masks:
        if len(mask) == len(token) and all(
            (m == "9" and c.isdigit()) or (m != "9" and c == m) for c, m in zip(token, mask)
        ):
            return mask
    return None


Alternatives = Sequence[tuple[tuple[str, float], ...]]


def _redecode_date(
    token: str, alts: Alternatives, opts: PatternOptions
) -> tuple[str, tuple[str, ...]] | None:
    """The most probable valid date the CTC alternatives allow for a date-shaped token whose value
    is impossible; None when the token is a valid date, not date-shaped, or nothing valid is near."""
    mask = _date_mask(token, opts.date_masks)
    if mask is None or len(alts) != len(token):
        return None
    if _plausible_date(token, mask) and _plausible_year(token, mask, opts.years):
        return None
    options: list[list[tuple[str, float]]] = []
    for ch, cands in zip(token, alts):
        if not ch.isdigit():
            options.append([(ch, 1.0)])
            continue
        read = max([p for c, p in cands if c == ch], default=1.0)
        digits = {ch: read}
        for c, p in cands:
            if c.isdigit() and c != ch and p >= opts.min_alternative:
                digits[c] = p
        options.append(sorted(digits.items(), key=lambda cp: -cp[1]))
    best: tuple[float, str] | None = None
    for combo in itertools.product(*options):
        value = "".join(c for c, _ in combo)
        if not (_plausible_date(value, mask) and _plausible_year(value, mask, opts.years)):
            continue
        score = sum(math.log(max(p, 1e-9)) for _, p in combo)
        if best is None or score > best[0]:
            best = (score, value)
    if best is None:
        return None
    value = best[1]
    changes = tuple(
        f"{a}->{b} at {i + 1} (CTC alternative, date {token} impossible)"
        for i, (a, b) in enumerate(zip(token, value))
        if a != b
    )
    return value, changes


def _date(token: str, masks: tuple[str, ...]) -> tuple[str, tuple[str, ...]] | None:
    if not any(c.isalpha() for c in token):
        return None
    for mask in masks:
        fixed = correct_to_mask(token, mask)
        if fixed is not None and fixed.changed and _plausible_date(fixed.value, mask):
            return fixed.value, fixed.changes
    return None


def aligned_alternatives(text: str, decoded) -> Alternatives | None:  # decoded: rec.Decoded
    """`decoded.alternatives` for each character of `text`, which is `decoded.text` with its word
    spaces recovered (spaces get none); None when they do not line up."""
    alts = getattr(decoded, "alternatives", ())
    if not alts or len(alts) != len(decoded.text):
        return None
    glyphs = [a for c, a in zip(decoded.text, alts) if not c.isspace()]
    if len(glyphs) != sum(1 for c in text if not c.isspace()):
        return None
    it = iter(glyphs)
    return [() if c.isspace() else next(it) for c in text]


def apply_patterns(
    text: str, opts: PatternOptions, alternatives: Alternatives | None = None
) -> PatternResult:
    """`text` with caption and date confusables corrected. `alternatives` (per character of `text`,
    see `aligned_alternatives`) lets impossible dates be re-decoded."""
    redecode = opts.redecode_dates and alternatives is not None and len(alternatives) == len(text)
    if not opts.enabled or not (redecode or opts.space_after_captions or any(c in _CONFUSABLE for c in text)):
        return PatternResult(text)
    out: list[str] = []
    changes: list[str] = []
    pos = 0
    for m in _TOKEN.finditer(text):
        out.append(text[pos : m.start()])
        token = m.group(0)
        hit = _caption(token, opts.captions) or _date(token, opts.date_masks)
        value, notes = (token, ()) if hit is None else hit
        if redecode:
            again = _redecode_date(value, alternatives[m.start() : m.end()], opts)  # type: ignore[index]
            if again is not None:
                value, notes = again[0], (*notes, *again[1])
        out.append(value)
        changes.extend(f"{token!r}: {c}" for c in notes)
        pos = m.end()
    out.append(text[pos:])
    fixed = "".join(out)
    if opts.space_after_captions:
        fixed, spaced = _space_after_captions(fixed, opts.space_after_captions)
        changes.extend(spaced)
    return PatternResult(fixed, tuple(changes))


def _space_after_captions(text: str, captions: tuple[str, ...]) -> tuple[str, list[str]]:
    """`text` with a space after each caption's ':' or '.' that a value follows without one."""
    names = "|".join(re.escape(c) for c in sorted(captions, key=len, reverse=True))
    pattern = re.compile(rf"(?<![A-Za-z0-9/])({names})([:.])(?=[A-Za-z0-9])")
    notes = [f"space after {m.group(0)!r} (label caption)" for m in pattern.finditer(text)]
    return pattern.sub(r"\1\2 ", text), notes
