"""Line-confidence calibration: the measured chance that a whole line is right.

A line is right only if every character and every word space is. The recognizer's character
probabilities see the characters only, so the calibrated confidence reads a handful of features
of the line's evidence (`FEATURE_NAMES`, computed by `line_features`): the least and mean
character probabilities, the runner-up of the weakest character, how close the nearest word-space
decision was to its threshold, the space class's probability where no space was put, the number
of spaces and punctuation marks, and whether a retry or a pattern correction changed the line.
A logistic regression combines them into one score (`COEFFICIENTS` over features standardised by
`MEANS`/`SCALES`) and a monotone piecewise-linear curve (`KNOTS`/`VALUES`, isotonic regression)
maps that score to the share of lines that were right.

Everything was fitted on every other line of the dev sets and of generated labels and checked on
the other half (`python -m studies.calibration_study`; figures, the per-set breakdown
and the reliability table in docs/BENCHMARKS.md). Only numpy is needed at run time. The raw
character probability still drives the pipeline's own decisions (drop score, retries); only the
confidence reported with each line is calibrated.

This module stays whole past the house's ~500 lines (issue 14): it is one calibration model, and
most of its length is the fitted constants, which `studies.calibration_study` rewrites in place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edge_ocr.ocr.pipeline.rec import Decoded
from edge_ocr.ocr.pipeline.spacing import SpacingOptions, glyph_geometry, mostly_latin

FEATURE_NAMES: tuple[str, ...] = (
    "logit_min",  # logit of the least probable character's probability
    "logit_mean",  # logit of the mean character probability
    "logit_runner_up",  # logit of the likeliest other character at the weakest character
    "weak_chars",  # characters read below 0.9
    "missed",  # highest chance that a character was missed between two read ones
    "space_doubt",  # the space class's highest probability in a gap where no space was put
    "margin_put",  # |log(gap / threshold)| of the nearest recovered space to its threshold
    "margin_not_put",  # the same for the nearest gap where no space was put
    "recovered_spaces",  # spaces put by word-space recovery (not read by the recognizer)
    "spaces_by_punctuation",  # spaces next to a punctuation mark
    "spaces",  # spaces in the final text
    "punctuation",  # punctuation and symbol characters in the final text
    "log_chars",  # log(1 + non-space characters)
    "non_latin",  # share of non-Latin characters
    "retried",  # a retry variant's reading replaced the first reading
    "corrected",  # a pattern correction changed the text
)

# -- fitted model (onnx/fp32, 6383 lines (5903 dev + 480 generated), fit half; pipeline of commit 6aa4d05) --
MEANS: tuple[float, ...] = (
    2.590667,
    4.039813,
    -4.660016,
    1.084011,
    0.051754,
    0.023251,
    0.864696,
    0.27902,
    0.288957,
    0.284214,
    0.848577,
    0.871612,
    2.08662,
    0.005268,
    0.12229,
    0.001694,
)
SCALES: tuple[float, ...] = (
    2.081064,
    1.571737,
    2.700452,
    1.656183,
    0.10885,
    0.080219,
    0.295301,
    0.3329,
    0.666291,
    0.601642,
    1.335024,
    1.066289,
    0.688747,
    0.071687,
    0.32762,
    0.041121,
)
COEFFICIENTS: tuple[float, ...] = (
    -0.018675,
    0.826373,
    -0.319839,
    -0.102273,
    -0.335631,
    -1.145763,
    0.40564,
    0.069712,
    0.039304,
    -0.120498,
    0.173415,
    0.150406,
    -0.347435,
    -0.556264,
    -0.367412,
    -0.018925,
)
INTERCEPT: float = 1.613797
KNOTS: tuple[float, ...] = (
    0.000604,
    0.00907,
    0.025519,
    0.080997,
    0.156429,
    0.227203,
    0.316182,
    0.388301,
    0.447538,
    0.519861,
    0.578279,
    0.612926,
    0.644958,
    0.714542,
    0.771448,
    0.801244,
    0.831417,
    0.858569,
    0.886576,
    0.899141,
    0.932914,
    0.944633,
    0.951617,
    0.960999,
    0.970763,
    0.989203,
    0.995106,
)
VALUES: tuple[float, ...] = (
    0.0,
    0.0167,
    0.037,
    0.1045,
    0.1316,
    0.1875,
    0.2812,
    0.36,
    0.4875,
    0.537,
    0.5833,
    0.6379,
    0.6901,
    0.7012,
    0.7273,
    0.7964,
    0.8088,
    0.8682,
    0.8879,
    0.9,
    0.9162,
    0.9306,
    0.9467,
    0.9645,
    0.9851,
    1.0,
    1.0,
)
# -----------------------------------------------------------------------------------------------

#: the fits of other model families (`python -m studies.calibration_study --models FAMILY --write`);
#: a family not listed here uses the constants above
FAMILY_FITS: dict[str, dict[str, tuple[float, ...] | float]] = {
    # -- families --
    # -- fitted model ppocrv6-tiny (ppocrv6-tiny onnx/fp32, dev ground-truth lines + 40 generated labels, fit half; pipeline of 2d66064) --
    "ppocrv6-tiny": {
        "means": (
            3.044926,
            4.625207,
            -5.345138,
            1.034742,
            0.107785,
            0.018136,
            0.927067,
            0.285616,
            0.156519,
            0.276146,
            0.835244,
            0.859599,
            2.052894,
            0.004788,
            0.118195,
            0.000358,
        ),
        "scales": (
            2.631461,
            2.14418,
            2.872139,
            1.632368,
            0.143369,
            0.069023,
            0.216206,
            0.338534,
            0.470704,
            0.615025,
            1.371033,
            1.085685,
            0.688183,
            0.06692,
            0.322839,
            0.018922,
        ),
        "coefficients": (
            -0.121282,
            0.772305,
            -0.323171,
            -0.383096,
            -0.101275,
            -0.590153,
            0.167365,
            0.031669,
            0.056644,
            -0.206417,
            0.32073,
            0.214116,
            -0.469595,
            -0.87997,
            -0.210379,
            0.124439,
        ),
        "intercept": 1.471576,
        "knots": (
            0.032222,
            0.136089,
            0.248188,
            0.327369,
            0.403907,
            0.454169,
            0.510289,
            0.59528,
            0.645262,
            0.661398,
            0.729934,
            0.7721,
            0.823568,
            0.867069,
            0.890308,
            0.920275,
            0.954672,
            0.971589,
            0.986172,
        ),
        "values": (
            0.0185,
            0.0667,
            0.2203,
            0.32,
            0.4,
            0.4848,
            0.5926,
            0.6184,
            0.64,
            0.6538,
            0.7108,
            0.771,
            0.8211,
            0.8333,
            0.8723,
            0.9397,
            0.9563,
            0.9673,
            0.9909,
        ),
    },
    # -- end ppocrv6-tiny --
    # -- fitted model ppocrv6-small (ppocrv6-small onnx/fp32, 5583 lines (dev ground-truth lines + 40 generated labels), fit half; pipeline of 2d66064) --
    "ppocrv6-small": {
        "means": (
            4.566044,
            6.11605,
            -6.94157,
            0.492837,
            0.027614,
            0.008437,
            0.95731,
            0.282037,
            0.078438,
            0.291547,
            0.851003,
            0.882521,
            2.056702,
            0.006608,
            0.053367,
            0.000358,
        ),
        "scales": (
            3.110725,
            2.404751,
            2.648952,
            0.967942,
            0.082058,
            0.050838,
            0.171063,
            0.337474,
            0.300323,
            0.625016,
            1.380121,
            1.090376,
            0.688395,
            0.08025,
            0.224764,
            0.018922,
        ),
        "coefficients": (
            -1.498693,
            1.856071,
            -0.320977,
            -0.345258,
            -0.194467,
            -0.580904,
            0.399332,
            -0.053984,
            0.104048,
            0.055278,
            0.293582,
            -0.021998,
            -0.783298,
            -0.833724,
            -0.083793,
            0.109895,
        ),
        "intercept": 1.951843,
        "knots": (
            0.001734,
            0.034641,
            0.12661,
            0.229369,
            0.340625,
            0.448694,
            0.53313,
            0.609068,
            0.674173,
            0.720152,
            0.743987,
            0.769587,
            0.794826,
            0.812243,
            0.860816,
            0.870049,
            0.884178,
            0.93411,
            0.937859,
            0.947062,
            0.96093,
            0.980835,
            0.984522,
        ),
        "values": (
            0.0,
            0.0714,
            0.1786,
            0.2941,
            0.3529,
            0.5111,
            0.525,
            0.5775,
            0.6385,
            0.6667,
            0.75,
            0.7692,
            0.7952,
            0.8222,
            0.8438,
            0.8696,
            0.8908,
            0.9286,
            0.9455,
            0.9587,
            0.9776,
            1.0,
            1.0,
        ),
    },
    # -- end ppocrv6-small --
}

_EPS = 1e-4
_MARGIN_CAP = 1.0


@dataclass(frozen=True)
class CalibrationOptions:
    enabled: bool = True
    means: tuple[float, ...] = MEANS
    scales: tuple[float, ...] = SCALES
    coefficients: tuple[float, ...] = COEFFICIENTS
    intercept: float = INTERCEPT
    knots: tuple[float, ...] = KNOTS
    values: tuple[float, ...] = VALUES

    @classmethod
    def for_family(cls, family: str) -> CalibrationOptions:
        """The calibration fitted for a model family's pipeline (`FAMILY_FITS`; others: PP-OCRv4's)."""
        fitted = FAMILY_FITS.get(family)
        return cls(**fitted) if fitted else cls()  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        n = len(FEATURE_NAMES)
        if not (len(self.means) == len(self.scales) == len(self.coefficients) == n):
            raise ValueError(f"calibration needs {n} means, scales and coefficients ({FEATURE_NAMES})")
        if len(self.knots) != len(self.values) or len(self.knots) < 2:
            raise ValueError("calibration knots and values must be of equal length, at least 2")


@dataclass(frozen=True)
class LineEvidence:
    """What the pipeline knows about one line when it reports it."""

    decoded: Decoded  # the reading kept (after retries)
    text: str  # the text reported (word spaces recovered, patterns applied)
    retried: bool = False  # a retry variant's reading replaced the first reading
    corrected: bool = False  # a pattern correction changed the text


def _logit(p: float) -> float:
    p = min(max(p, _EPS), 1.0 - _EPS)
    return math.log(p / (1.0 - p))


@dataclass(frozen=True)
class _Gaps:
    """Per gap between adjacent non-space characters of the reading."""

    read: list[bool]  # the recognizer read a space there
    final: list[bool]  # the final text has a space there
    log_ratio: list[float] | None  # log(centre distance / (gap_ratio x pitch)); None: not judged
    punct: list[bool]  # a punctuation mark on either side


def _gaps(evidence: LineEvidence, opts: SpacingOptions) -> _Gaps:
    """The word-space geometry `spacing.space_after` judges (centre distance over glyph pitch,
    compared to `gap_ratio`), and which gaps got a space."""
    dec = evidence.decoded
    chars = [c for c in dec.text if c != " "]
    read = [dec.text[i + 1 : i + 2] == " " for i, c in enumerate(dec.text) if c != " "][:-1]
    geo = glyph_geometry(dec.text, dec.frames) if len(dec.frames) == len(dec.text) else None
    final: list[bool] = []
    for word in evidence.text.split():
        final += [False] * (len(word) - 1) + [True]
    final = final[:-1]
    if len(final) != len(read):  # a correction changed the length: judge the reading's own spaces
        final = list(read)
    punct = [not (a.isalnum() and b.isalnum()) for a, b in zip(chars, chars[1:])]
    log_ratio = None
    if (
        opts.enabled
        and geo is not None
        and len(geo.glyphs) >= max(opts.min_chars, 3)
        and mostly_latin(dec.text, opts.min_latin_ratio)
    ):
        dist = geo.dist
        plain = dist[~np.array(read, dtype=bool)]
        pitch = float(np.median(plain)) if len(plain) else 0.0
        if pitch > 0:
            log_ratio = [float(x) for x in np.log(np.maximum(dist / (opts.gap_ratio * pitch), 1e-3))]
    return _Gaps(read, final, log_ratio, punct)


def _nearest(margins: list[float]) -> float:
    return float(min([_MARGIN_CAP, *[abs(m) for m in margins]]))


def line_features(evidence: LineEvidence, spacing: SpacingOptions | None = None) -> np.ndarray:
    """The features the calibration reads, in the order of `FEATURE_NAMES`."""
    dec = evidence.decoded
    probs = list(dec.char_confidences) or ([dec.min_confidence] if dec.text else [])
    weakest = int(np.argmin(probs)) if probs else -1
    alts = dec.alternatives[weakest] if 0 <= weakest < len(dec.alternatives) else ()
    runner_up = max([0.0, *[p for ch, p in alts if ch != dec.text[weakest]]])
    g = _gaps(evidence, spacing or SpacingOptions())
    before_gap = [i for i, c in enumerate(dec.text) if c != " "][:-1]  # the character before each gap
    missed = [dec.missed_after[i] for i in before_gap if i < len(dec.missed_after)]
    doubt = [
        dec.space_after[i] for k, i in enumerate(before_gap) if i < len(dec.space_after) and not g.final[k]
    ]
    ratios = g.log_ratio or []
    text = evidence.text
    ink = [c for c in text if not c.isspace()]
    values = {
        "logit_min": _logit(dec.min_confidence if text else 0.0),
        "logit_mean": _logit(dec.confidence if text else 0.0),
        "logit_runner_up": _logit(runner_up),
        "weak_chars": float(sum(p < 0.9 for p in probs)),
        "missed": float(max([0.0, *missed])),
        "space_doubt": float(max([0.0, *doubt])),
        "margin_put": _nearest([r for r, f, rd in zip(ratios, g.final, g.read) if f and not rd]),
        "margin_not_put": _nearest([r for r, f in zip(ratios, g.final) if not f]),
        "recovered_spaces": float(sum(f and not r for f, r in zip(g.final, g.read))),
        "spaces_by_punctuation": float(sum(f and p for f, p in zip(g.final, g.punct))),
        "spaces": float(sum(g.final)),
        "punctuation": float(sum(not c.isalnum() for c in ink)),
        "log_chars": math.log1p(len(ink)),
        "non_latin": (sum(ord(c) >= 0x250 for c in ink) / len(ink)) if ink else 0.0,
        "retried": float(evidence.retried),
        "corrected": float(evidence.corrected),
    }
    return np.array([values[name] for name in FEATURE_NAMES], dtype=np.float64)


def score(features: np.ndarray, opts: CalibrationOptions) -> float:
    """The logistic regression's probability for one line's features."""
    z = (np.asarray(features, dtype=np.float64) - np.array(opts.means)) / np.array(opts.scales)
    t = float(np.dot(z, np.array(opts.coefficients)) + opts.intercept)
    return 1.0 / (1.0 + math.exp(-min(max(t, -50.0), 50.0)))


def calibrate(raw_score: float, opts: CalibrationOptions) -> float:
    """The isotonic curve: the model's score mapped to the measured share of right lines."""
    if not opts.enabled:
        return float(raw_score)
    return float(np.interp(raw_score, opts.knots, opts.values))


def line_confidence(
    evidence: LineEvidence, opts: CalibrationOptions, spacing: SpacingOptions | None = None
) -> float:
    """The confidence reported with a line. Disabled: the recognizer's mean character
    probability, as the reference reports it; enabled: the calibrated chance that the line is
    right. `spacing`: the word-space parameters the pipeline used."""
    if not opts.enabled:
        return float(evidence.decoded.confidence)
    if not evidence.text:
        return 0.0
    return calibrate(score(line_features(evidence, spacing), opts), opts)
