"""The values field extraction returns: one `Field` per key, a `ReceiptFields` per page. No I/O."""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from edge_ocr.types import Quad


class FieldKind(str, enum.Enum):
    """The kinds of document whose fields can be extracted (`ocr --fields`, a recipe's `extract`)."""

    RECEIPT = "receipt"  # receipts and invoices: company, date, address, total


RECEIPT_FIELDS: tuple[str, ...] = ("company", "date", "address", "total")


@dataclass(frozen=True)
class Field:
    """One extracted field: the text as printed (after OCR-slip corrections), a normalised value
    where one exists (ISO date, decimal amount), a confidence in [0, 1] and the boxes of the lines
    it came from. `currency` is set on amounts whose currency is printed (ISO 4217 code when the
    mark names one, else the mark as printed)."""

    text: str
    value: str | None
    confidence: float
    boxes: tuple[Quad, ...]
    currency: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "text": self.text,
            "value": self.value,
            "confidence": round(float(self.confidence), 4),
            "boxes": [[[round(float(x), 2), round(float(y), 2)] for x, y in box] for box in self.boxes],
        }
        if self.currency is not None:
            out["currency"] = self.currency
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Field:
        boxes = tuple(tuple((float(p[0]), float(p[1])) for p in box) for box in d.get("boxes") or ())
        value = d.get("value")
        currency = d.get("currency")
        return cls(
            text=str(d["text"]),
            value=None if value is None else str(value),
            confidence=float(d.get("confidence", 0.0)),
            boxes=boxes,  # type: ignore[arg-type]
            currency=None if currency is None else str(currency),
        )


@dataclass(frozen=True)
class ReceiptFields:
    """A receipt's or invoice's fields. A field not found is None, with the reason in `missing`."""

    company: Field | None = None
    date: Field | None = None
    address: Field | None = None
    total: Field | None = None
    missing: Mapping[str, str] = field(default_factory=dict)
    elapsed_ms: float = 0.0

    kind = FieldKind.RECEIPT

    def get(self, name: str) -> Field | None:
        if name not in RECEIPT_FIELDS:
            raise KeyError(name)
        return getattr(self, name)

    def items(self) -> Iterator[tuple[str, Field | None]]:
        for name in RECEIPT_FIELDS:
            yield name, getattr(self, name)

    def to_dict(self) -> dict[str, Any]:
        """The contract's `data.fields`: every field name, each a Field object or null."""
        return {name: (f.to_dict() if f is not None else None) for name, f in self.items()}

    def missing_dict(self) -> dict[str, str]:
        """The contract's `data.fields_missing`: why each null field is null."""
        return {name: self.missing.get(name, "not found") for name, f in self.items() if f is None}

    def contract(self) -> dict[str, Any]:
        """What `ocr --fields receipt --json` adds to the contract's `data`: `fields` (every name,
        a Field object or null) and `fields_missing` (why each null one is null)."""
        return {"fields": self.to_dict(), "fields_missing": self.missing_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], missing: Mapping[str, str] | None = None) -> ReceiptFields:
        values = {name: (Field.from_dict(d[name]) if d.get(name) else None) for name in RECEIPT_FIELDS}
        return cls(**values, missing=dict(missing or {}))
