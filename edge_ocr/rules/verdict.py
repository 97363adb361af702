"""Label rules: extract a recipe's fields from an OCR result and check them. Pure, no I/O.

A verdict is `pass`, `fail` (something was read and is wrong or missing) or `unreadable` (nothing
usable was read), with human-readable reasons. Field values are corrected for confusable characters
only where the field's format demands a digit or a letter; each change is recorded beside the raw
reading.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from edge_ocr.config import FieldSpec, FieldType, RecipeConfig
from edge_ocr.rules.confusables import Correction, correct_digits, correct_to_mask, matches_mask
from edge_ocr.rules.dates import ParsedDate, parse_label_date
from edge_ocr.rules.receipt import FieldLike, check_receipt
from edge_ocr.types import OcrResult, TextLine


class VerdictStatus(str, enum.Enum):
    PASS = "pass"
    FAIL = "fail"
    UNREADABLE = "unreadable"


@dataclass(frozen=True)
class FieldReading:
    name: str
    found: bool
    value: str | None = None  # after corrections
    raw: str | None = None  # as read
    changes: tuple[str, ...] = ()
    confidence: float = 0.0
    date: ParsedDate | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": self.value, "found": self.found}
        if self.raw is not None and self.raw != self.value:
            out["raw"] = self.raw
        if self.changes:
            out["corrections"] = list(self.changes)
        if self.date is not None:
            out["date"] = self.date.first.isoformat()
            if self.date.last != self.date.first:
                out["date_last"] = self.date.last.isoformat()
        return out


@dataclass(frozen=True)
class Verdict:
    status: VerdictStatus
    reasons: tuple[str, ...]
    fields: dict[str, FieldReading] = field(default_factory=dict)
    recipe: str | None = None

    def fields_dict(self) -> dict[str, Any]:
        return {name: r.to_dict() for name, r in self.fields.items()}


# -- GS1 ---------------------------------------------------------------------------------------


def gs1_check_digit(body: str) -> int:
    """The GS1 mod-10 check digit for the digits in `body` (weights 3,1,3,... from the right)."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def gs1_valid(number: str) -> bool:
    return number.isdigit() and len(number) >= 2 and gs1_check_digit(number[:-1]) == int(number[-1])


# -- extraction --------------------------------------------------------------------------------


def _centre(line: TextLine) -> tuple[float, float]:
    xs = [p[0] for p in line.box]
    ys = [p[1] for p in line.box]
    return sum(xs) / 4, sum(ys) / 4


def _region_lines(result: OcrResult, region: tuple[float, float, float, float]) -> list[TextLine]:
    w, h = result.image_size
    x0, y0, x1, y1 = region[0] * w, region[1] * h, region[2] * w, region[3] * h
    out = []
    for line in result.lines:
        cx, cy = _centre(line)
        if x0 <= cx <= x1 and y0 <= cy <= y1:
            out.append(line)
    return out


def _search(spec: FieldSpec, lines: list[TextLine]) -> tuple[str, float] | None:
    """The first match of the field's regex in the lines (each line, then all lines joined)."""
    if spec.regex is None:
        if not lines:
            return None
        return " ".join(line.text for line in lines).strip(), min(line.confidence for line in lines)
    pattern = re.compile(spec.regex, re.IGNORECASE)
    for line in lines:
        m = pattern.search(line.text)
        if m:
            return (m.group(1) if m.groups() else m.group(0)).strip(), line.confidence
    joined = "\n".join(line.text for line in lines)
    m = pattern.search(joined)
    if m:
        conf = min((line.confidence for line in lines), default=0.0)
        return (m.group(1) if m.groups() else m.group(0)).strip(), conf
    return None


def _correct(spec: FieldSpec, raw: str) -> Correction:
    if not spec.correct_confusables:
        return Correction(raw)
    if spec.type is FieldType.GTIN:
        return correct_digits(raw.replace(" ", ""))
    if spec.format and not matches_mask(raw, spec.format):
        fixed = correct_to_mask(raw, spec.format)
        if fixed is not None:
            return fixed
    return Correction(raw)


def read_field(spec: FieldSpec, result: OcrResult) -> FieldReading:
    lines = list(result.lines) if spec.region is None else _region_lines(result, spec.region)
    found = _search(spec, lines)
    if found is None:
        return FieldReading(spec.name, found=False)
    raw, conf = found
    if spec.type is FieldType.DATE:
        parsed = parse_label_date(raw, spec.date_formats)
        if parsed is not None:
            return FieldReading(spec.name, True, parsed.text, raw, parsed.changes, conf, parsed)
        return FieldReading(spec.name, True, raw, raw, (), conf)
    fixed = _correct(spec, raw)
    return FieldReading(spec.name, True, fixed.value, raw, fixed.changes, conf)


# -- checks ------------------------------------------------------------------------------------


def expand_expected(template: str, today: date) -> str:
    """`{today:%y%m%d}` style templates, so a recipe can expect today's lot."""
    return re.sub(r"\{today(?::([^}]*))?\}", lambda m: today.strftime(m.group(1) or "%Y-%m-%d"), template)


def _check_field(spec: FieldSpec, reading: FieldReading, today: date) -> list[str]:
    reasons: list[str] = []
    if not reading.found or not reading.value:
        if spec.required:
            reasons.append(f"{spec.name}: missing")
        return reasons
    value = reading.value
    if spec.type is FieldType.DATE and reading.date is None:
        reasons.append(f"{spec.name}: {value!r} is not a date in a known format")
    if spec.type is FieldType.GTIN and not gs1_valid(value):
        reasons.append(f"{spec.name}: {value!r} fails the GS1 check digit")
    if spec.format and spec.type is not FieldType.DATE and not matches_mask(value, spec.format):
        reasons.append(f"{spec.name}: {value!r} does not match format {spec.format!r}")
    if spec.expected is not None:
        want = expand_expected(spec.expected, today)
        if value.strip().upper() != want.strip().upper():
            reasons.append(f"{spec.name}: read {value!r}, expected {want!r}")
    return reasons


def _receipt_reading(name: str, f: Any) -> FieldReading:
    if f is None:
        return FieldReading(name, found=False)
    value = f.value if f.value is not None else f.text
    return FieldReading(name, True, value, f.text, (), float(getattr(f, "confidence", 0.0)))


def evaluate(
    recipe: RecipeConfig,
    result: OcrResult,
    *,
    today: date | None = None,
    fields: Mapping[str, FieldLike | None] | None = None,
) -> Verdict:
    """Read the recipe's fields from `result` and check them; with `fields` (the page's receipt
    fields, for recipes with `extract`), also check those and report them among the readings."""
    today = today or datetime.now().date()
    readings = {spec.name: read_field(spec, result) for spec in recipe.fields}
    if fields is not None:
        for name, f in fields.items():
            readings.setdefault(name, _receipt_reading(name, f))
    if not result.lines:
        return Verdict(VerdictStatus.UNREADABLE, ("no text was read",), readings, recipe.name)
    if result.confidence < recipe.checks.min_confidence:
        return Verdict(
            VerdictStatus.UNREADABLE,
            (f"mean confidence {result.confidence:.2f} is below {recipe.checks.min_confidence:.2f}",),
            readings,
            recipe.name,
        )
    if (recipe.fields or fields is not None) and not any(r.found for r in readings.values()):
        return Verdict(
            VerdictStatus.UNREADABLE, ("none of the recipe's fields was found",), readings, recipe.name
        )
    reasons: list[str] = []
    for spec in recipe.fields:
        reasons += _check_field(spec, readings[spec.name], today)
    if fields is not None:
        reasons += check_receipt(recipe.checks, fields, today)
    checks = recipe.checks
    expiry = readings.get(checks.expiry) if checks.expiry else None
    production = readings.get(checks.production) if checks.production else None
    if expiry is not None and expiry.date is not None:
        if (
            production is not None
            and production.date is not None
            and expiry.date.last <= production.date.first
        ):
            reasons.append(
                f"{checks.expiry}: {expiry.date.last.isoformat()} is not after "
                f"{checks.production} {production.date.first.isoformat()}"
            )
        if checks.not_expired and expiry.date.last < today:
            reasons.append(f"{checks.expiry}: expired on {expiry.date.last.isoformat()}")
    status = VerdictStatus.FAIL if reasons else VerdictStatus.PASS
    return Verdict(status, tuple(reasons), readings, recipe.name)
