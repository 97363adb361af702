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

# fitted 2026-11-24 on onnx/fp32, feature "min", 5903 lines (see module docstring)
KNOTS: tuple[float, ...] = (
    0.0903,
    0.1429,
    0.1612,
    0.1789,
    0.2059,
    0.2429,
    0.267,
    0.2804,
    0.3006,
    0.3114,
    0.3213,
    0.3339,
    0.352,
    0.414,
    0.4691,
    0.5002,
    0.5231,
    0.5662,
    0.6314,
    0.8467,
    0.9346,
    0.9845,
    0.99,
    0.9993,
)
VALUES: tuple[float, ...] = (
    0.0,
    0.0,
    0.0,
    0.0,
    0.0,
    0.0,
    0.0,
    0.0,
    0.0,
    0.0,
    0.0,
    0.0,
    0.0833,
    0.1667,
    0.3333,
    0.4286,
    0.4876,
    0.5,
    0.6065,
    0.7424,
    0.7963,
    0.8875,
    0.9156,
    0.9659,
)


FEATURE = "min"


@dataclass(frozen=True)
class CalibrationOptions:
    enabled: bool = True
    #: what the curve reads: "mean" (the recognizer's line confidence, as PaddleOCR reports it)
    #: or "min" (the least probable character's probability)
    feature: str = FEATURE
    knots: tuple[float, ...] = KNOTS
    values: tuple[float, ...] = VALUES


def calibrate(confidence: float, opts: CalibrationOptions) -> float:
    if not opts.enabled:
        return float(confidence)
    return float(np.interp(confidence, opts.knots, opts.values))


def line_confidence(mean: float, minimum: float, opts: CalibrationOptions) -> float:
    """The confidence reported with a line. Disabled: the recognizer's mean, as the reference
    reports it; enabled: the calibrated chance that the line is right."""
    if not opts.enabled:
        return float(mean)
    return calibrate(minimum if opts.feature == "min" else mean, opts)
