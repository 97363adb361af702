"""Typed values passed between stages. No I/O here."""

from __future__ import annotations

import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

Point = tuple[float, float]
Quad = tuple[Point, Point, Point, Point]


class PrintProfile(str, enum.Enum):
    """What a line's print is, as a recipe, a station or `--print` declares it."""

    AUTO = "auto"  # unknown: every variant as a low-confidence retry; dots found by the pipeline (dots.py)
    PLAIN = "plain"  # solid print (laser, thermal transfer, offset): no dot or contrast variants
    DOT_MATRIX = "dot-matrix"  # separate round dots: dots joined on every line
    INKJET = "inkjet"  # continuous inkjet: spread, uneven dots, blurred into strokes on every line
    LOW_CONTRAST = "low-contrast"  # faint or unevenly lit print: local contrast on every line


class ModelRole(str, enum.Enum):
    """The three PP-OCR networks."""

    DET = "det"
    CLS = "cls"
    REC = "rec"


@dataclass(frozen=True)
class TextLine:
    """One recognised line: text, confidence in [0, 1], and a clockwise quad from top-left
    in the original image's pixel coordinates."""

    text: str
    confidence: float
    box: Quad
    raw_text: str | None = None  # the reading before any correction, when one was applied
    corrections: tuple[str, ...] = ()  # human-readable notes of what post-processing changed

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "text": self.text,
            "confidence": round(float(self.confidence), 6),
            "box": [[round(float(x), 2), round(float(y), 2)] for x, y in self.box],
        }
        if self.raw_text is not None and self.raw_text != self.text:
            out["raw_text"] = self.raw_text
        if self.corrections:
            out["corrections"] = list(self.corrections)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TextLine:
        box = tuple((float(p[0]), float(p[1])) for p in d["box"])
        return cls(
            text=str(d["text"]),
            confidence=float(d["confidence"]),
            box=box,  # type: ignore[arg-type]
            raw_text=d.get("raw_text"),
            corrections=tuple(d.get("corrections", ())),
        )


@dataclass(frozen=True)
class OcrResult:
    """What the pipeline returns for one image."""

    lines: tuple[TextLine, ...]
    image_size: tuple[int, int]  # (width, height) of the image that was read
    engine: str
    model: str  # model set id, e.g. "ppocrv4-mobile/fp32"
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)

    @property
    def confidence(self) -> float:
        if not self.lines:
            return 0.0
        return float(sum(line.confidence for line in self.lines) / len(self.lines))

    def data_dict(self) -> dict[str, Any]:
        """The `data` object of the output contract (shared/eval/README.md)."""
        return {
            "text": self.text,
            "confidence": round(self.confidence, 6),
            "lines": [line.to_dict() for line in self.lines],
        }

    def to_contract(self, image: str, timestamp: float | None = None) -> dict[str, Any]:
        return {
            "image": image,
            "status": "success",
            "data": self.data_dict(),
            "timestamp": time.time() if timestamp is None else timestamp,
            "engine": self.engine,
            "model": self.model,
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
        }


def error_contract(image: str, message: str, engine: str, timestamp: float | None = None) -> dict[str, Any]:
    """The output-contract line for an image that could not be read."""
    return {
        "image": image,
        "status": "error",
        "data": {"text": "", "confidence": 0.0, "lines": []},
        "error": message,
        "timestamp": time.time() if timestamp is None else timestamp,
        "engine": engine,
        "timings_ms": {},
    }


def lines_from_dicts(items: Sequence[dict[str, Any]]) -> tuple[TextLine, ...]:
    return tuple(TextLine.from_dict(d) for d in items)
