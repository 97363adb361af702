"""Receipt and invoice fields from an OCR result's lines and boxes: company, date, address, total.

Candidates come from rules (`candidates.py`: dates and amounts as printed, spans of header rows),
each with layout and text features; the scorer (`scorer.py`, a logistic regression per field
shipped as JSON) picks the best one. A field is left null, with the reason, when nothing was found
or nothing scored high enough. Pure: no files, no database, no network.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from edge_ocr.errors import ConfigError
from edge_ocr.fields.candidates import (
    Candidate,
    address_candidates,
    company_candidates,
    date_candidates,
    row_facts,
    total_candidates,
)
from edge_ocr.fields.layout import Page, layout
from edge_ocr.fields.model import Field, FieldKind, ReceiptFields
from edge_ocr.fields.normalize import DATE_ORDERS
from edge_ocr.fields.scorer import FieldModel, Scorer, default_scorer
from edge_ocr.types import OcrResult, TextLine

logger = logging.getLogger(__name__)

_LATIN = re.compile(r"[A-Za-z]")
_LETTER = re.compile(r"[^\W\d_]")
#: below this share of Latin letters among all letters, company and address are not guessed
MIN_LATIN_SHARE = 0.6


@dataclass(frozen=True)
class ReceiptOptions:
    """`date_order`: how an ambiguous numeric date (03/04/2018) is read: `dmy` (day first, the
    default), `mdy` (month first) or `ymd`."""

    date_order: str = "dmy"

    def __post_init__(self) -> None:
        if self.date_order not in DATE_ORDERS:
            raise ConfigError(f"date_order {self.date_order!r}: use one of {', '.join(DATE_ORDERS)}")


@dataclass(frozen=True)
class Scored:
    """A field's candidates with their probabilities, best first."""

    candidates: tuple[Candidate, ...]
    probabilities: tuple[float, ...]

    @property
    def best(self) -> tuple[Candidate, float] | None:
        return (self.candidates[0], self.probabilities[0]) if self.candidates else None


def _rank(model: FieldModel | None, candidates: list[Candidate]) -> Scored:
    if model is None or not candidates:
        return Scored(tuple(candidates), tuple(0.0 for _ in candidates))
    probs = model.probabilities([c.features for c in candidates])
    order = sorted(range(len(candidates)), key=lambda i: (-probs[i], candidates[i].lines[0].index))
    return Scored(tuple(candidates[i] for i in order), tuple(float(probs[i]) for i in order))


def score_page(page: Page, scorer: Scorer, options: ReceiptOptions = ReceiptOptions()) -> dict[str, Scored]:
    """Every field's scored candidates. The company is chosen first: the address's features say
    where it sits relative to the company."""
    facts = row_facts(page)
    out = {
        "date": _rank(scorer.model("date"), date_candidates(page, options.date_order)),
        "total": _rank(scorer.model("total"), total_candidates(page)),
        "company": _rank(scorer.model("company"), company_candidates(page, facts)),
    }
    best = out["company"].best
    company_rows = best[0].rows if best else ()
    out["address"] = _rank(scorer.model("address"), address_candidates(page, company_rows, facts))
    return out


_NOTHING = {
    "date": "no date in a known form (numeric, month name or 8 digits) was printed",
    "total": "no amount with two decimals was printed",
    "company": "no line of words at the top of the page",
    "address": "no line of words at the top of the page besides the company",
}


def _field(name: str, scored: Scored, model: FieldModel | None) -> tuple[Field | None, str | None]:
    best = scored.best
    if best is None:
        return None, _NOTHING[name]
    cand, prob = best
    if model is None:
        return None, f"the scorer has no model for {name}"
    threshold = model.min_confidence
    if prob < threshold:
        return None, (
            f"no candidate is likely enough: the best, {cand.text!r}, scored {prob:.2f} (needs {threshold:.2f})"
        )
    confidence = prob * cand.ocr_confidence
    return Field(cand.text, cand.value, confidence, cand.boxes, cand.currency), None


def extract_receipt(
    result: OcrResult | Sequence[TextLine],
    options: ReceiptOptions = ReceiptOptions(),
    scorer: Scorer | None = None,
) -> ReceiptFields:
    """The receipt's company, date, address and total (each None, with a reason, when not found)."""
    started = time.perf_counter()
    lines = result.lines if isinstance(result, OcrResult) else tuple(result)
    scorer = scorer or default_scorer()
    if not any(line.text.strip() for line in lines):
        reason = "no text was read"
        return ReceiptFields(
            missing=dict.fromkeys(("company", "date", "address", "total"), reason),
            elapsed_ms=(time.perf_counter() - started) * 1000,
        )
    page = layout(lines)
    scored = score_page(page, scorer, options)
    text = " ".join(line.text for line in lines)
    letters = _LETTER.findall(text)
    latin = len(_LATIN.findall(text)) / len(letters) if letters else 0.0
    found: dict[str, Field | None] = {}
    missing: dict[str, str] = {}
    for name in ("company", "date", "address", "total"):
        if name in ("company", "address") and latin < MIN_LATIN_SHARE:
            found[name] = None
            missing[name] = (
                f"the page is not in Latin script ({latin:.0%} of its letters are Latin): "
                "company and address are read from Latin-script receipts"
            )
            continue
        found[name], why = _field(name, scored[name], scorer.model(name))
        if why is not None:
            missing[name] = why
    return ReceiptFields(**found, missing=missing, elapsed_ms=(time.perf_counter() - started) * 1000)


def extract_fields(
    kind: FieldKind | str, result: OcrResult, options: ReceiptOptions = ReceiptOptions()
) -> ReceiptFields:
    """Fields of the given kind (`receipt`: the only kind so far)."""
    try:
        FieldKind(kind)
    except ValueError:
        known = ", ".join(k.value for k in FieldKind)
        raise ConfigError(f"unknown kind of fields {kind!r} (known: {known})") from None
    return extract_receipt(result, options)
