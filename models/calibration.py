"""Calibration tensors for INT8 quantization: synthetic labels, preprocessed as the pipeline does.

The labels come from `edge_ocr.synth` with a seed different from the accuracy check set, so the
check never sees a calibration image. Det tensors are the whole label through
`edge_ocr.ocr.pipeline.det.preprocess`; rec tensors are each ground-truth line cropped with
`edge_ocr.ocr.pipeline.det.crop_quad` and normalised with `edge_ocr.ocr.pipeline.rec.resize_norm` at its
natural width (height 48).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np


@dataclass(frozen=True)
class CalibrationSpec:
    seed: int = 4321
    count: int = 32
    max_rec_width: int = 1280

    def as_dict(self) -> dict[str, Any]:
        return {"generator": "edge_ocr.synth.check_set", "seed": self.seed, "count": self.count}


class CalibrationData:
    """Lazily generated calibration tensors for each role."""

    def __init__(self, spec: CalibrationSpec | None = None) -> None:
        self.spec = spec or CalibrationSpec()

    @cached_property
    def labels(self) -> list[Any]:
        from edge_ocr.synth import check_set

        return check_set(seed=self.spec.seed, count=self.spec.count)

    def det(self) -> list[np.ndarray]:
        from edge_ocr.ocr.pipeline.det import DetOptions, preprocess

        opts = DetOptions()
        return [preprocess(label.image, opts).tensor for label in self.labels]

    def crops(self) -> list[np.ndarray]:
        from edge_ocr.ocr.pipeline.det import crop_quad

        return [
            crop_quad(label.image, np.asarray(line.box, dtype=np.float32))
            for label in self.labels
            for line in label.lines
        ]

    def rec(self) -> list[np.ndarray]:
        from edge_ocr.ocr.pipeline.rec import resize_norm

        out = []
        for crop in self.crops():
            h, w = crop.shape[:2]
            width = min(self.spec.max_rec_width, max(48, int(math.ceil(48 * w / float(h)))))
            out.append(resize_norm(crop, 48, width)[None])
        return out

    def cls(self) -> list[np.ndarray]:
        from edge_ocr.ocr.pipeline.rec import resize_norm

        return [resize_norm(crop, 48, 192)[None] for crop in self.crops()]

    def __call__(self, role: str) -> list[np.ndarray]:
        return {"det": self.det, "rec": self.rec, "cls": self.cls}[role]()
