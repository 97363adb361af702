"""Field values and text lines of factory labels: lot, serial, dates, GS1 element strings, names.

Everything here is a pure function of a `numpy.random.Generator`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"  # no I/O/Q: coders avoid them
_DIGITS = "0123456789"
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")

# (names, qualifiers, amounts) per product family, so names stay plausible
_PRODUCTS = (
    (
        ("Vitamin C", "Ibuprofen", "Paracetamol", "Omega 3", "Zinc", "Magnesium"),
        ("Tablets", "Capsules", "Syrup", "Extra Strong", "Chewable"),
        ("500 mg", "200 mg", "100 ml", "x 30", "x 20"),
    ),
    (
        ("Green Tea", "Whole Milk", "Sunflower Oil", "Orange Juice", "Rolled Oats"),
        ("Organic", "Premium", "Light", "Classic"),
        ("250 ml", "1 L", "500 g", "1.5 kg"),
    ),
    (
        ("Hydraulic Filter", "Ball Bearing", "Cable Ties", "Wood Glue", "Silicone Sealant"),
        ("Heavy Duty", "Refill", "Type B", "Industrial"),
        ("20 pcs", "310 ml", "5 L", "M8 x 40"),
    ),
)
_PRODUCT_AMOUNTS = ("500 mg", "250 ml", "1 L", "100 g", "x 30")
_EXTRA_LINES = ("Made in EU", "Keep dry", "Store below 25 C", "Net 250 ml", "Do not freeze", "Batch tested")

_CJK_NAMES = ("维生素C片", "纯牛奶", "绿茶饮料", "液压滤芯", "硅酮密封胶", "布洛芬胶囊", "有机葵花籽油")
_CJK_PREFIXES = {"lot": "批号: ", "mfg": "生产日期: ", "exp": "有效期至: ", "serial": "序列号: "}

_PREFIXES = {
    "lot": ("LOT: ", "LOT ", "BATCH: ", "L: "),
    "serial": ("SN: ", "S/N: ", "SER: "),
    "mfg": ("MFG: ", "MFD: ", "PROD: "),
    "exp": ("EXP: ", "EXP ", "USE BY: ", "BB: "),
}

FIELD_KEYS = ("product", "lot", "exp", "mfg", "serial", "gs1")


def gs1_check_digit(body: str) -> int:
    """GS1 mod-10 check digit of a digit string (GTIN-8/12/13/14 without its last digit, SSCC...)."""
    if not body.isdigit():
        raise ValueError(f"GS1 check digit needs digits only, got {body!r}")
    total = sum(int(c) * (3 if i % 2 == 0 else 1) for i, c in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def is_valid_gtin(gtin: str) -> bool:
    return gtin.isdigit() and len(gtin) in (8, 12, 13, 14) and gs1_check_digit(gtin[:-1]) == int(gtin[-1])


def _pick(rng: np.random.Generator, items: tuple[str, ...] | str) -> str:
    return items[int(rng.integers(len(items)))]


def _chars(rng: np.random.Generator, alphabet: str, n: int) -> str:
    return "".join(_pick(rng, alphabet) for _ in range(n))


def make_gtin(rng: np.random.Generator) -> str:
    """A GTIN-14 with indicator digit, GS1 company prefix and a valid check digit."""
    prefix = _pick(rng, ("0950", "0400", "0590", "0690", "0871", "0300", "0761"))
    body = prefix + _chars(rng, _DIGITS, 13 - len(prefix))
    return body + str(gs1_check_digit(body))


def make_lot(rng: np.random.Generator) -> str:
    kind = int(rng.integers(4))
    if kind == 0:  # A23B0417
        return _pick(rng, _LETTERS) + _chars(rng, _DIGITS, 2) + _pick(rng, _LETTERS) + _chars(rng, _DIGITS, 4)
    if kind == 1:  # L240317
        return "L" + _chars(rng, _DIGITS, 6)
    if kind == 2:  # 2403A17
        return _chars(rng, _DIGITS, 4) + _pick(rng, _LETTERS) + _chars(rng, _DIGITS, 2)
    return _chars(rng, _LETTERS, 2) + _chars(rng, _DIGITS, 3)  # AB123


def make_serial(rng: np.random.Generator) -> str:
    if rng.random() < 0.7:
        return f"{int(rng.integers(0, 10**8)):010d}"
    return _chars(rng, _LETTERS, 2) + _chars(rng, _DIGITS, 8)


def make_dates(rng: np.random.Generator) -> tuple[dt.date, dt.date]:
    """(manufacturing date, expiry date): expiry 6 to 36 months later, on the last day of its month."""
    mfg = dt.date(2024, 1, 1) + dt.timedelta(days=int(rng.integers(0, 3 * 365)))
    months = mfg.month - 1 + int(rng.integers(6, 37))
    year, month = mfg.year + months // 12, months % 12 + 1
    first_next = dt.date(year + month // 12, month % 12 + 1, 1)
    return mfg, first_next - dt.timedelta(days=1)


def format_mfg(rng: np.random.Generator, d: dt.date) -> str:
    fmt = int(rng.integers(4))
    if fmt == 0:
        return d.strftime("%Y-%m-%d")
    if fmt == 1:
        return d.strftime("%d.%m.%Y")
    if fmt == 2:
        return d.strftime("%Y/%m/%d")
    return f"{d.day:02d}{_MONTHS[d.month - 1]}{d.year}"


def format_exp(rng: np.random.Generator, d: dt.date) -> str:
    fmt = int(rng.integers(4))
    if fmt == 0:
        return f"{d.year}/{d.month:02d}"
    if fmt == 1:
        return f"{d.month:02d}/{d.year}"
    if fmt == 2:
        return d.strftime("%Y-%m-%d")
    return f"{_MONTHS[d.month - 1]} {d.year}"


def gs1_element_string(gtin: str, expiry: dt.date, lot: str, serial: str | None = None) -> str:
    """Human-readable GS1 element string: (01) GTIN, (17) expiry YYMMDD, (10) lot, optional (21) serial."""
    out = f"(01){gtin}(17){expiry:%y%m%d}(10){lot}"
    return out + f"(21){serial}" if serial else out


def make_product_name(rng: np.random.Generator) -> str:
    """Mixed-case words separated by single spaces, e.g. 'Vitamin C Tablets 500 mg'."""
    names, qualifiers, amounts = _PRODUCTS[int(rng.integers(len(_PRODUCTS)))]
    words = [_pick(rng, names)]
    if rng.random() < 0.6:
        words.append(_pick(rng, qualifiers))
    if rng.random() < 0.7:
        words.append(_pick(rng, amounts))
    return " ".join(words)


@dataclass(frozen=True)
class LabelLine:
    """One line to print: its text, the field it shows, and whether a coder prints it (dot matrix)."""

    text: str
    field: str  # one of FIELD_KEYS or "extra"
    coded: bool  # variable data printed by a coder (lot, dates, serial), not pre-printed


@dataclass(frozen=True)
class LabelContent:
    lines: tuple[LabelLine, ...]  # every candidate line, in print order
    fields: dict[str, str]  # field -> value as printed


def make_label_content(rng: np.random.Generator, *, cjk: bool = False) -> LabelContent:
    """All candidate lines of one label, consistent with each other (the GS1 string repeats lot and expiry)."""
    lot, serial, gtin = make_lot(rng), make_serial(rng), make_gtin(rng)
    mfg, exp = make_dates(rng)
    values = {"lot": lot, "serial": serial, "mfg": format_mfg(rng, mfg), "exp": format_exp(rng, exp)}
    product = make_product_name(rng)
    if cjk and rng.random() < 0.6:
        product = _pick(rng, _CJK_NAMES) + (" " + _pick(rng, _PRODUCT_AMOUNTS) if rng.random() < 0.5 else "")

    def prefix(key: str) -> str:
        if cjk and rng.random() < 0.5:
            return _CJK_PREFIXES[key]
        return _pick(rng, _PREFIXES[key])

    coded = [LabelLine(prefix(k) + values[k], k, True) for k in ("lot", "exp", "mfg", "serial")]
    gs1 = gs1_element_string(gtin, exp, lot, serial if rng.random() < 0.2 and serial.isdigit() else None)
    lines = (LabelLine(product, "product", False), *coded, LabelLine(gs1, "gs1", False))
    picks = rng.choice(len(_EXTRA_LINES), size=3, replace=False)
    extras = tuple(LabelLine(_EXTRA_LINES[int(i)], "extra", False) for i in picks)
    fields = {"product": product, **values, "gtin": gtin, "gs1": gs1, "exp_yymmdd": f"{exp:%y%m%d}"}
    return LabelContent(lines=lines + extras, fields=fields)


def line_priority(rng: np.random.Generator, content: LabelContent) -> list[LabelLine]:
    """Every candidate line, most wanted first: product name, lot, expiry, then the rest shuffled.
    Print the chosen ones in this order except the GS1 string, which goes last (under the barcode)."""
    head, lot, exp, mfg, serial, gs1, *extras = content.lines
    optional = [mfg, serial, gs1]
    order = rng.permutation(len(optional))
    return [head, lot, exp] + [optional[int(i)] for i in order] + list(extras)


def printed_fields(content: LabelContent, lines: list[LabelLine]) -> dict[str, str]:
    """Field values shown on the label, as printed. A GS1 string also shows the GTIN and, when no
    separate line shows them, the lot and the expiry (as YYMMDD)."""
    f = content.fields
    out = {line.field: f[line.field] for line in lines if line.field in f}
    if "gs1" in out:
        out["gtin"] = f["gtin"]
        out.setdefault("lot", f["lot"])
        out.setdefault("exp", f["exp_yymmdd"])
        if "(21)" in f["gs1"]:
            out.setdefault("serial", f["serial"])
    return out
