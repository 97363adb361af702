"""Checks on a receipt's fields (recipes with `extract = "receipt"`): the total above a limit, a
date in the future, a field that must be found. Pure; works on anything with a field's `text` and
`value` (edge_ocr.fields.Field), so the rules do not depend on how fields are read."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Protocol

from edge_ocr.config import ChecksSpec


class FieldLike(Protocol):
    text: str
    value: str | None


def check_receipt(checks: ChecksSpec, fields: Mapping[str, FieldLike | None], today: date) -> list[str]:
    """The reasons the receipt fails its recipe's checks (empty: it passes)."""
    reasons: list[str] = []
    for name in checks.require:
        if fields.get(name) is None:
            reasons.append(f"{name}: not found on the receipt")
    total = fields.get("total")
    if checks.max_total is not None and total is not None:
        try:
            amount = Decimal(total.value or "")
        except InvalidOperation:
            reasons.append(f"total: {total.text!r} is not an amount, so the limit cannot be checked")
        else:
            if amount > Decimal(str(checks.max_total)):
                reasons.append(f"total: {amount} is above the limit {checks.max_total:g}")
    when = fields.get("date")
    if checks.future_date and when is not None:
        try:
            day = date.fromisoformat(when.value or "")
        except ValueError:
            reasons.append(f"date: {when.text!r} is not a date, so it cannot be checked")
        else:
            if day > today:
                reasons.append(f"date: {day.isoformat()} is in the future")
    return reasons
