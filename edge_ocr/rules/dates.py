"""Date parsing for label fields: several common formats, with format-driven confusable correction.

Pure functions, no I/O. A month-only date (EXP 11/2027) means the end of that month for expiry
and its first day for production; `parse_label_date` returns both ends.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, datetime

from edge_ocr.rules.confusables import correct_to_mask

# Order matters where readings are ambiguous: day-first before month-first (EU/ISO labels).
DEFAULT_DATE_FORMATS: tuple[str, ...] = (
    "%Y-%m-%d",
    "%Y/%m/%d",
    "%Y.%m.%d",
    "%d/%m/%Y",
    "%d.%m.%Y",
    "%d-%m-%Y",
    "%d/%m/%y",
    "%d.%m.%y",
    "%d-%m-%y",
    "%Y%m%d",
    "%d%m%Y",
    "%d %b %Y",
    "%d%b%Y",
    "%d %b %y",
    "%d%b%y",
    "%b %Y",
    "%b%Y",
    "%m/%Y",
    "%m.%Y",
    "%m-%Y",
    "%m/%y",
    "%Y-%m",
    "%Y/%m",
)

_SLOT = {"%Y": "9999", "%y": "99", "%m": "99", "%d": "99", "%b": "AAA"}


def _mask(fmt: str) -> str:
    out = fmt
    for code, mask in _SLOT.items():
        out = out.replace(code, mask)
    return out


def _has_day(fmt: str) -> bool:
    return "%d" in fmt


@dataclass(frozen=True)
class ParsedDate:
    first: date  # earliest day the text can mean
    last: date  # latest day (the month's end when no day is printed)
    format: str
    text: str  # the (corrected) text that parsed
    changes: tuple[str, ...] = ()


def parse_label_date(raw: str, formats: tuple[str, ...] = ()) -> ParsedDate | None:
    """Parse a printed date, correcting look-alike characters only where a format demands a digit
    or a letter. None when no format fits."""
    text = re.sub(r"\s+", " ", raw.strip())
    for fmt in formats or DEFAULT_DATE_FORMATS:
        candidates = [(text, ())]
        fixed = correct_to_mask(text, _mask(fmt))
        if fixed is not None and fixed.changed:
            candidates.append((fixed.value, fixed.changes))
        for value, changes in candidates:
            try:
                dt = datetime.strptime(value.title() if "%b" in fmt else value, fmt).date()
            except ValueError:
                continue
            if _has_day(fmt):
                return ParsedDate(dt, dt, fmt, value, tuple(changes))
            last = dt.replace(day=calendar.monthrange(dt.year, dt.month)[1])
            return ParsedDate(dt, last, fmt, value, tuple(changes))
    return None
