"""Finding and normalising what receipts print: dates, amounts, currencies, keywords. Pure, no I/O.

Every finder works on one line of text and returns the span as printed (after the OCR-slip
corrections it made: a look-alike letter where a digit must be, a dropped date separator) and the
normalised value: an ISO date, a decimal amount as text (`"1234.50"`) with its currency.
"""

from __future__ import annotations

import calendar
import functools
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation

# Letters OCR reads in place of digits. Applied only inside digit runs (see `digitize`).
_TO_DIGIT = str.maketrans(
    {
        "O": "0",
        "o": "0",
        "D": "0",
        "Q": "0",
        "I": "1",
        "l": "1",
        "|": "1",
        "i": "1",
        "S": "5",
        "s": "5",
        "B": "8",
        "Z": "2",
        "z": "2",
        "G": "6",
        "b": "6",
    }
)


def collapse(text: str) -> str:
    """Whitespace runs to one space, stripped."""
    return " ".join(text.split())


def digitize(text: str) -> str:
    """`text` with look-alike letters turned into digits inside number-like runs (`2O18`,
    `I2/03/2018`, `1O.5O`): a run of digits, look-alikes and separators that is not part of a word,
    holds at least two real digits, and more digits than look-alikes. Same length as `text`, so
    spans found in the result index the original."""

    def fix(m: re.Match[str]) -> str:
        run = m.group(0)
        digits = sum(c.isdigit() for c in run)
        letters = sum(c.isalpha() or c == "|" for c in run)
        if digits < 2 or letters == 0 or letters > digits:
            return run
        return run.translate(_TO_DIGIT)

    return _RUN.sub(fix, text)


_RUN = re.compile(r"(?<![A-Za-z])[0-9OoDQIl|iSsBZzGb][0-9OoDQIl|iSsBZzGb/\-.,:]*(?<![/\-.,:])(?![A-Za-z])")


# -- dates ---------------------------------------------------------------------------------------

MONTHS: dict[str, int] = {}
for _i, _names in enumerate(
    (
        ("JAN", "JANUARY", "JANV", "JANVIER", "JANUAR", "ENE", "ENERO", "GEN", "GENNAIO", "JANEIRO"),
        ("FEB", "FEBRUARY", "FEV", "FEVR", "FEVRIER", "FEBRUAR", "FEBRERO", "FEBBRAIO", "FEVEREIRO", "FEBR"),
        ("MAR", "MARCH", "MARS", "MAERZ", "MARZ", "MRZ", "MARZO", "MARCO"),
        ("APR", "APRIL", "AVR", "AVRIL", "ABR", "ABRIL", "APRILE"),
        ("MAY", "MAI", "MAYO", "MAG", "MAGGIO", "MAIO"),
        ("JUN", "JUNE", "JUIN", "JUNI", "JUNIO", "GIU", "GIUGNO", "JUNHO"),
        ("JUL", "JULY", "JUIL", "JUILLET", "JULI", "JULIO", "LUG", "LUGLIO", "JULHO"),
        ("AUG", "AUGUST", "AOUT", "AGO", "AGOSTO"),
        ("SEP", "SEPT", "SEPTEMBER", "SEPTEMBRE", "SEPTIEMBRE", "SETT", "SETTEMBRE", "SET", "SETEMBRO"),
        ("OCT", "OCTOBER", "OCTOBRE", "OKT", "OKTOBER", "OCTUBRE", "OTT", "OTTOBRE", "OUT", "OUTUBRO"),
        ("NOV", "NOVEMBER", "NOVEMBRE", "NOVIEMBRE", "NOVEMBRO"),
        ("DEC", "DECEMBER", "DECEMBRE", "DEZ", "DEZEMBER", "DIC", "DICIEMBRE", "DICEMBRE", "DEZEMBRO"),
    ),
    start=1,
):
    for _name in _names:
        MONTHS.setdefault(_name, _i)
_MONTH_RE = "|".join(sorted(MONTHS, key=len, reverse=True))

_NUMERIC_DATE = re.compile(
    r"(?<![\d/.\-])(?P<a>\d{1,4})(?P<s1>[/.\-]|\s(?=\d{1,2}[/.\-]))(?P<b>\d{1,2})(?P<s2>[/.\-])(?P<c>\d{4}|\d{2})(?:(?=\d{1,2}[:;]\d{2})|(?![\d/\-]|\.\d))"
)
_NAMED_DATE = re.compile(
    rf"(?<![A-Z\d])(?P<d>\d{{1,2}})(?:ST|ND|RD|TH)?[\s\-/.]*(?P<m>{_MONTH_RE})\.?[\s\-/.,]*(?P<y>\d{{4}}|\d{{2}})(?![\d])",
    re.IGNORECASE,
)
_NAMED_DATE_US = re.compile(
    rf"(?<![A-Z])(?P<m>{_MONTH_RE})\.?\s+(?P<d>\d{{1,2}})(?:ST|ND|RD|TH)?,?\s+(?P<y>\d{{4}})(?!\d)",
    re.IGNORECASE,
)
_COMPACT_DATE = re.compile(r"(?<!\d)(?P<x>\d{8})(?!\d)")
_TIME = re.compile(r"\b\d{1,2}[:.;]\d{2}(?:[:.;]\d{2})?\s*(?:[AP]\.?M\.?)?", re.IGNORECASE)

#: which order day, month and year are printed in when a numeric date could be either
DATE_ORDERS = ("dmy", "mdy", "ymd")


@dataclass(frozen=True)
class DateMatch:
    start: int
    end: int
    text: str  # as printed, after OCR-slip corrections
    value: date
    style: str  # "numeric", "named", "compact"
    year_digits: int
    corrected: bool  # letters read as digits, or a dropped separator restored


def _year(y: str) -> int:
    n = int(y)
    return n if len(y) == 4 else 2000 + n if n < 70 else 1900 + n


def _make(y: int, m: int, d: int) -> date | None:
    if not (1 <= m <= 12 and 1970 <= y <= 2099):
        return None
    if not 1 <= d <= calendar.monthrange(y, m)[1]:
        return None
    return date(y, m, d)


def _numeric(a: str, b: str, c: str, order: str) -> date | None:
    if len(a) == 4:  # 2018-03-25
        return _make(int(a), int(b), int(c)) if len(c) <= 2 else None
    if len(a) > 2:
        return None
    y = _year(c)
    first = (int(a), int(b)) if order != "mdy" else (int(b), int(a))  # (day, month)
    got = _make(y, first[1], first[0])
    if got is None:  # 03/25/2018 on a day-first reading: the only valid reading wins
        got = _make(y, first[0], first[1])
    return got


def find_dates(text: str, order: str = "dmy") -> tuple[DateMatch, ...]:
    """Every date printed in `text`; see `_find_dates`."""
    return _find_dates(text, order)


@functools.lru_cache(maxsize=4096)
def _find_dates(text: str, order: str) -> tuple[DateMatch, ...]:
    """Every date printed in `text` (numeric with / - . separators, day-month names in several
    languages, 8-digit compact DDMMYYYY/YYYYMMDD), left to right. `order` decides ambiguous
    numeric dates (03/04/2018): day first (`dmy`, the default) or month first (`mdy`)."""
    fixed = digitize(text)
    found: list[DateMatch] = []
    taken: list[tuple[int, int]] = []

    def add(start: int, end: int, value: date | None, style: str, year_digits: int, printed: str) -> None:
        if value is None or any(s < end and start < e for s, e in taken):
            return
        corrected = printed != text[start:end]
        found.append(DateMatch(start, end, printed, value, style, year_digits, corrected))
        taken.append((start, end))

    for m in _NAMED_DATE.finditer(fixed):
        y = _year(m.group("y"))
        add(
            m.start(),
            m.end(),
            _make(y, MONTHS[m.group("m").upper()], int(m.group("d"))),
            "named",
            len(m.group("y")),
            fixed[m.start() : m.end()],
        )
    for m in _NAMED_DATE_US.finditer(fixed):
        add(
            m.start(),
            m.end(),
            _make(int(m.group("y")), MONTHS[m.group("m").upper()], int(m.group("d"))),
            "named",
            4,
            fixed[m.start() : m.end()],
        )
    for m in _NUMERIC_DATE.finditer(fixed):
        s1, s2 = m.group("s1"), m.group("s2")
        if s1 != s2 and s1 != " ":
            continue
        printed = fixed[m.start() : m.end()]
        if s1 == " ":  # a separator OCR dropped: `05 02-18` is 05-02-18
            printed = m.group("a") + s2 + m.group("b") + s2 + m.group("c")
        value = _numeric(m.group("a"), m.group("b"), m.group("c"), order)
        year_digits = 4 if len(m.group("a")) == 4 else len(m.group("c"))
        add(m.start(), m.end(), value, "numeric", year_digits, printed)
    for m in _COMPACT_DATE.finditer(fixed):
        x = m.group("x")
        value = _make(int(x[4:]), int(x[2:4]), int(x[:2])) or _make(int(x[:4]), int(x[4:6]), int(x[6:]))
        add(m.start(), m.end(), value, "compact", 4, x)
    found.sort(key=lambda d: d.start)
    return tuple(found)


def has_time(text: str) -> bool:
    return _TIME.search(text) is not None


# -- amounts -------------------------------------------------------------------------------------

# Printed currency marks -> ISO 4217 code (None: the mark does not name one currency).
CURRENCY_MARKS: dict[str, str | None] = {
    "RM": "MYR",
    "MYR": "MYR",
    "S$": "SGD",
    "SGD": "SGD",
    "US$": "USD",
    "USD": "USD",
    "$": None,
    "€": "EUR",
    "EUR": "EUR",
    "£": "GBP",
    "GBP": "GBP",
    "¥": None,
    "JPY": "JPY",
    "CNY": "CNY",
    "RMB": "CNY",
    "₹": "INR",
    "INR": "INR",
    "RS": "INR",
    "CHF": "CHF",
    "FR.": "CHF",
    "A$": "AUD",
    "AUD": "AUD",
    "C$": "CAD",
    "CAD": "CAD",
    "HK$": "HKD",
    "HKD": "HKD",
    "NZ$": "NZD",
    "RP": "IDR",
    "IDR": "IDR",
    "₱": "PHP",
    "PHP": "PHP",
    "฿": "THB",
    "THB": "THB",
    "₩": "KRW",
    "KRW": "KRW",
    "KR": None,
    "SEK": "SEK",
    "NOK": "NOK",
    "DKK": "DKK",
    "ZŁ": "PLN",
    "PLN": "PLN",
    "₫": "VND",
    "VND": "VND",
    "R$": "BRL",
    "BRL": "BRL",
}
_MARK_RE = "|".join(re.escape(m) for m in sorted(CURRENCY_MARKS, key=len, reverse=True))
_NUMBER = r"(?P<num>\d{1,3}(?:[,.'\s]\d{3}){1,4}[.,]\d{2}|\d{1,12}[.,]\d{2})"
_AMOUNT = re.compile(
    rf"(?<![\w.,])(?P<neg>-\s?)?(?:(?P<pre>{_MARK_RE})(?P<gap>\s?))?(?P<neg2>-)?{_NUMBER}(?!\d|[.,]\d)"
    rf"(?:(?P<gap2>\s?)(?P<post>{_MARK_RE})(?![A-Z]))?",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class AmountMatch:
    start: int
    end: int
    text: str  # the amount as printed: with its currency mark when printed against the number
    value: Decimal
    currency: str | None  # ISO code, or the mark as printed when it names no single currency
    mark: str | None  # the currency mark as printed, when there is one
    corrected: bool


def parse_number(num: str) -> Decimal | None:
    """`1,234.50`, `1.234,50`, `1 234,50`, `12,50` -> Decimal; the last separator before two final
    digits is the decimal one."""
    digits = re.sub(r"[^\d]", "", num)
    if len(num) < 4 or num[-3] not in ".,":
        return None
    try:
        return Decimal(digits[:-2] + "." + digits[-2:])
    except InvalidOperation:  # pragma: no cover - digits only
        return None


def currency_of(mark: str | None) -> str | None:
    if mark is None:
        return None
    key = mark.upper()
    return CURRENCY_MARKS.get(key) or mark


def find_amounts(text: str) -> tuple[AmountMatch, ...]:
    """Every amount printed in `text`; see `_find_amounts`."""
    return _find_amounts(text)


@functools.lru_cache(maxsize=4096)
def _find_amounts(text: str) -> tuple[AmountMatch, ...]:
    """Every amount with two decimals printed in `text`, left to right, with its currency mark when
    one is printed before or after it (`RM4.00`, `$ 8.20`, `12,50 €`)."""
    fixed = digitize(text)
    out: list[AmountMatch] = []
    for m in _AMOUNT.finditer(fixed):
        value = parse_number(m.group("num"))
        if value is None:
            continue
        if m.group("neg") or m.group("neg2"):
            value = -value
        pre, post = m.group("pre"), m.group("post")
        if (
            pre
            and pre.upper() in ("RS", "KR", "RP")
            and m.group("gap") == ""
            and m.start() > 0
            and fixed[m.start() - 1].isalpha()
        ):
            continue
        mark = pre or post
        # the text as printed: a mark written against the number belongs to it (`RM4.00`), one set
        # apart by a space does not (`RM 37.10` prints the amount `37.10`)
        start = m.start("num") if not m.group("neg2") else m.start("neg2")
        if m.group("neg"):
            start = m.start("neg")
        end = m.end("num")
        if pre and not m.group("gap"):
            start = m.start("pre") if not m.group("neg") else m.start("neg")
        if post and not m.group("gap2"):
            end = m.end("post")
        printed = fixed[start:end]
        out.append(
            AmountMatch(
                start=m.start(),
                end=m.end(),
                text=printed,
                value=value,
                currency=currency_of(mark),
                mark=mark,
                corrected=printed != text[start:end],
            )
        )
    return tuple(out)


def amount_text(value: Decimal) -> str:
    """The normalised value of an amount: plain decimal with two places."""
    return f"{value.quantize(Decimal('0.01'))}"


# -- keywords ------------------------------------------------------------------------------------

_KEY_FOLD = str.maketrans({"0": "O", "1": "I", "5": "S", "8": "B", "|": "I", "!": "I", "$": "S"})


def fold(text: str) -> str:
    """Upper case with digits read as the letters they look like and punctuation as spaces: the
    form keywords are matched in, so `T0TAL` and `TOTAL:` both hold `TOTAL`."""
    up = text.upper().translate(_KEY_FOLD)
    up = re.sub(r"[^A-Z&/ ]+", " ", up)
    return " ".join(up.split())


def keyword_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    """A pattern matching any of `words` (folded) as whole words in folded text."""
    alts = "|".join(re.escape(fold(w)) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<![A-Z])(?:{alts})(?![A-Z])")


# -- company names -------------------------------------------------------------------------------

# Legal suffixes as OCR misreads them (one look-alike letter), snapped to the printed form.
_SUFFIX_SLIPS = {
    "SON BHD": "SDN BHD",
    "5DN BHD": "SDN BHD",
    "SDN BND": "SDN BHD",
    "SDN 8HD": "SDN BHD",
    "SDN BHO": "SDN BHD",
    "SDM BHD": "SDN BHD",
    "SDN BIID": "SDN BHD",
    "S/D": "S/B",
    "5/B": "S/B",
    "S/8": "S/B",
    "LTO": "LTD",
    "L TD": "LTD",
    "GMBM": "GMBH",
    "GRNBH": "GMBH",
    "1NC": "INC",
}
_SUFFIX_RE = re.compile(
    r"(?<![A-Z0-9])("
    + "|".join(re.escape(k) for k in sorted(_SUFFIX_SLIPS, key=len, reverse=True))
    + r")(?![A-Z0-9])",
    re.IGNORECASE,
)


def tidy_name(text: str) -> str:
    """A company name as printed, with OCR slips that only a closed vocabulary can fix: a legal
    suffix misread by one letter (`SON BHD`, `S/D`), stray marks before a word, spaces inside
    brackets (`( SUNGAI RENGIT )`)."""

    def snap(m: re.Match[str]) -> str:
        word = m.group(1)
        fixed = _SUFFIX_SLIPS[word.upper()]
        return fixed if word.isupper() else fixed.title() if word.istitle() else fixed

    out = _SUFFIX_RE.sub(snap, text)
    out = re.sub(r"(?<=\s)[`'\"_~^]+(?=[A-Za-z])", "", out)
    out = re.sub(r"\(\s+", "(", out)
    out = re.sub(r"\s+\)", ")", out)
    return collapse(out)
