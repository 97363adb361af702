"""Field extraction scored against key information (SROIE's `key/NNN.json`: company, date, address,
total): a field is right when its text equals the ground truth after collapsing whitespace,
case-insensitively. Precision = right / fields given, recall = right / fields in the ground truth,
per field and overall (micro-averaged over every field of every document)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_ocr.errors import InputError
from edge_ocr.evaluation.metrics import normalize_text

KEY_DIR = "key"


def field_equal(predicted: str | None, truth: str | None) -> bool:
    if predicted is None or truth is None:
        return False
    return normalize_text(predicted, True) == normalize_text(truth, True)


@dataclass(frozen=True)
class FieldCounts:
    right: int = 0
    given: int = 0  # fields the extractor returned (not null)
    truth: int = 0  # fields the ground truth has (not empty)

    def __add__(self, other: FieldCounts) -> FieldCounts:
        return FieldCounts(self.right + other.right, self.given + other.given, self.truth + other.truth)

    @property
    def precision(self) -> float:
        return self.right / self.given if self.given else 0.0

    @property
    def recall(self) -> float:
        return self.right / self.truth if self.truth else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
            "right": self.right,
            "given": self.given,
            "truth": self.truth,
        }


def count_fields(
    pairs: Iterable[tuple[Mapping[str, str | None], Mapping[str, str | None]]], names: tuple[str, ...]
) -> dict[str, FieldCounts]:
    """`pairs` of (predicted texts, ground truth) per document -> counts per field and `overall`."""
    counts = {name: FieldCounts() for name in names}
    for predicted, truth in pairs:
        for name in names:
            p, t = predicted.get(name), truth.get(name)
            t = t if t and t.strip() else None
            counts[name] = counts[name] + FieldCounts(
                right=int(field_equal(p, t)), given=int(p is not None), truth=int(t is not None)
            )
    total = FieldCounts()
    for c in counts.values():
        total = total + c
    counts["overall"] = total
    return counts


def read_key(key_dir: Path, image: Path) -> dict[str, str] | None:
    """The key information for `image` (`key/<image stem>.json`), None when there is none."""
    path = Path(key_dir) / f"{Path(image).stem}.json"
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read key information {path}: {exc}") from exc
    if not isinstance(doc, dict):
        raise InputError(f"{path}: key information must be a JSON object")
    return {str(k): ("" if v is None else str(v)) for k, v in doc.items()}
