"""The light learned scorer: one logistic regression per field over the candidates' named features,
shipped as JSON (`data/receipt_scorer.json`) and run with numpy alone.

The weights file holds, per field, the feature names, their mean and scale (the features are
standardised before weighing, so weights compare), the weights, the bias and the least confidence a
chosen candidate needs (below it the field is left null). `studies/receipt_scorer.py` trains it.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from edge_ocr.errors import ConfigError

FORMAT = "edge-ocr field scorer"
DEFAULT_WEIGHTS = "receipt_scorer.json"


@dataclass(frozen=True)
class FieldModel:
    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    min_confidence: float = 0.0

    def matrix(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        """Candidates' features in this model's order (a feature a candidate lacks is 0)."""
        names = self.features
        return np.array([[feats.get(n, 0.0) for n in names] for feats in rows], dtype=np.float64).reshape(
            len(rows), len(names)
        )

    def probabilities(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        if not rows:
            return np.zeros(0)
        z = ((self.matrix(rows) - self.mean) / self.scale) @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))

    def contributions(self, feats: Mapping[str, float]) -> dict[str, float]:
        """Each feature's share of the score for one candidate (for explaining a choice)."""
        x = (self.matrix([feats])[0] - self.mean) / self.scale
        return {name: float(w * v) for name, w, v in zip(self.features, self.weights, x)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "mean": [round(float(v), 6) for v in self.mean],
            "scale": [round(float(v), 6) for v in self.scale],
            "weights": [round(float(v), 6) for v in self.weights],
            "bias": round(float(self.bias), 6),
            "min_confidence": round(float(self.min_confidence), 4),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str) -> FieldModel:
        try:
            features = tuple(str(f) for f in d["features"])
            arrays = [np.asarray(d[k], dtype=np.float64) for k in ("mean", "scale", "weights")]
            bias = float(d["bias"])
            min_conf = float(d.get("min_confidence", 0.0))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: not a field model ({exc})") from None
        if any(a.shape != (len(features),) for a in arrays) or not all(np.isfinite(a).all() for a in arrays):
            raise ConfigError(f"{where}: mean, scale and weights must be {len(features)} finite numbers each")
        if (arrays[1] <= 0).any() or not math.isfinite(bias):
            raise ConfigError(f"{where}: scales must be positive and the bias finite")
        return cls(features, arrays[0], arrays[1], arrays[2], bias, min_conf)


@dataclass(frozen=True)
class Scorer:
    models: Mapping[str, FieldModel]
    info: Mapping[str, Any]

    def model(self, name: str) -> FieldModel | None:
        return self.models.get(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": 1,
            "fields": {k: m.to_dict() for k, m in self.models.items()},
            "info": dict(self.info),
        }


def parse_scorer(doc: Any, where: str = "scorer") -> Scorer:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != 1:
        raise ConfigError(f"{where}: not an {FORMAT!r} file of version 1")
    fields = doc.get("fields")
    if not isinstance(fields, dict):
        raise ConfigError(f"{where}: 'fields' must be a table of field models")
    models = {str(k): FieldModel.from_dict(v, f"{where}: field {k!r}") for k, v in fields.items()}
    return Scorer(models, dict(doc.get("info") or {}))


def load_scorer(path: Path | None = None) -> Scorer:
    """The scorer in `path`, or the one shipped with edge-ocr."""
    if path is None:
        return default_scorer()
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the field scorer {path}: {exc}") from None
    return parse_scorer(doc, str(path))


@functools.lru_cache(maxsize=1)
def default_scorer() -> Scorer:
    text = resources.files("edge_ocr.fields").joinpath("data", DEFAULT_WEIGHTS).read_text(encoding="utf-8")
    return parse_scorer(json.loads(text), f"edge_ocr/fields/data/{DEFAULT_WEIGHTS}")
