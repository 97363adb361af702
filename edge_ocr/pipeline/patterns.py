"""Generic label patterns: confusable correction where the shape of a token leaves no doubt.

Without a recipe we still know two things about label text: the captions coders print (LOT,
EXP, MFG, S/N ...) are words, and dates are digits. A token is changed only when, after swapping
look-alike characters (O/0, I/1, S/5, B/8, Z/2, see `edge_ocr.confusables`), it becomes exactly
one of those captions or a well-formed date (month 1-12, day 1-31). Free text is never touched:
a token that does not fit a pattern exactly is left as read. Every change is reported so the raw
reading is kept beside the corrected one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edge_ocr.confusables import DIGIT_TO_LETTER, LETTER_TO_DIGIT, correct_to_mask

CAPTIONS = (
    "LOT", "EXP", "MFG", "MFD", "BATCH", "SN", "S/N", "SER", "BB", "PROD", "USE", "BY", "BEST",
    "BEFORE", "REF", "GTIN", "QTY", "NET", "WT", "DATE", "CODE", "NO",
)  # fmt: skip

# date shapes: 9 = digit; month/day positions are checked after correction
DATE_MASKS = (
    "99/99", "99/9999", "99-99", "99-9999", "99.99", "99.9999",
    "99/99/99", "99/99/9999", "99.99.9999", "99-99-9999", "9999-99-99", "9999/99/99", "9999.99.99",
)  # fmt: skip

_TOKEN = re.compile(r"[^\s:]+")
_CONFUSABLE = set(LETTER_TO_DIGIT) | set(DIGIT_TO_LETTER)


@dataclass(frozen=True)
class PatternOptions:
    enabled: bool = True
    captions: tuple[str, ...] = CAPTIONS
    date_masks: tuple[str, ...] = DATE_MASKS


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


def _date(token: str, masks: tuple[str, ...]) -> tuple[str, tuple[str, ...]] | None:
    if not any(c.isalpha() for c in token):
        return None
    for mask in masks:
        fixed = correct_to_mask(token, mask)
        if fixed is not None and fixed.changed and _plausible_date(fixed.value, mask):
            return fixed.value, fixed.changes
    return None


def apply_patterns(text: str, opts: PatternOptions) -> PatternResult:
    if not opts.enabled or not any(c in _CONFUSABLE for c in text):
        return PatternResult(text)
    out: list[str] = []
    changes: list[str] = []
    pos = 0
    for m in _TOKEN.finditer(text):
        out.append(text[pos : m.start()])
        token = m.group(0)
        hit = _caption(token, opts.captions) or _date(token, opts.date_masks)
        if hit is None:
            out.append(token)
        else:
            out.append(hit[0])
            changes.extend(f"{token!r}: {c}" for c in hit[1])
        pos = m.end()
    out.append(text[pos:])
    return PatternResult("".join(out), tuple(changes))
