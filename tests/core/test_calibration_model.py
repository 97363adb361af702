"""Calibrated line confidence: the stored model, its features, and the study's fitting code."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from edge_ocr.ocr.pipeline import calibration
from edge_ocr.ocr.pipeline.calibration import (
    FEATURE_NAMES,
    CalibrationOptions,
    LineEvidence,
    calibrate,
    line_confidence,
    line_features,
)
from edge_ocr.ocr.pipeline.rec import Decoded
from edge_ocr.ocr.pipeline.runner import PipelineOptions
from edge_ocr.ocr.reader import open_pipeline
from edge_ocr.synth import Degradations, GeneratorOptions, generate_label
from studies.calibration_study import _recording, evidence, fit, isotonic, logistic, predict

V4 = "ppocrv4-mobile"  # these tests pin PP-OCRv4 behaviour (golden text, parity with PaddleOCR 2.10)


def _decoded(text: str, probs: list[float], pitch: int = 4) -> Decoded:
    frames = tuple((pitch * i, pitch * i + 1) for i in range(len(text)))
    return Decoded(
        text=text,
        confidence=float(np.mean(probs)),
        min_confidence=float(np.min(probs)),
        frames=frames,
        n_frames=pitch * len(text) + 2,
        char_confidences=tuple(probs),
        alternatives=tuple(((ch, p), ("#", min(1.0 - p, 0.5))) for ch, p in zip(text, probs)),
        space_after=(0.0,) * len(text),
        missed_after=(0.0,) * len(text),
    )


def test_stored_model_matches_the_features():
    n = len(FEATURE_NAMES)
    assert len(set(FEATURE_NAMES)) == n
    assert len(calibration.MEANS) == len(calibration.SCALES) == len(calibration.COEFFICIENTS) == n
    assert all(s > 0 for s in calibration.SCALES)
    assert np.all(np.isfinite(calibration.COEFFICIENTS)) and np.isfinite(calibration.INTERCEPT)
    # the curve: increasing knots, non-decreasing values in [0, 1]
    assert list(calibration.KNOTS) == sorted(calibration.KNOTS)
    assert all(0.0 <= v <= 1.0 for v in calibration.VALUES)
    assert all(b >= a for a, b in zip(calibration.VALUES, calibration.VALUES[1:]))
    feats = line_features(LineEvidence(_decoded("LOT 4711", [0.99] * 8), "LOT 4711"))
    assert feats.shape == (n,) and np.all(np.isfinite(feats))
    with pytest.raises(ValueError):
        CalibrationOptions(coefficients=(1.0,))


def test_calibration_is_monotone_and_bounded():
    opts = CalibrationOptions()
    ys = [calibrate(x, opts) for x in np.linspace(0, 1, 201)]
    assert all(0.0 <= y <= 1.0 for y in ys)
    assert all(b >= a for a, b in zip(ys, ys[1:]))


def test_surer_characters_never_lower_the_confidence():
    """The same line read with every character more probable is at least as trusted."""
    opts = CalibrationOptions()
    confs = [
        line_confidence(LineEvidence(_decoded("EXP2027", [p] * 7), "EXP2027"), opts)
        for p in (0.3, 0.5, 0.7, 0.85, 0.95, 0.99, 0.999)
    ]
    assert all(b >= a for a, b in zip(confs, confs[1:])), confs
    assert confs[-1] > confs[0]


def test_disabled_is_the_recognizers_mean():
    dec = _decoded("ABC1", [0.9, 0.8, 0.7, 0.6])
    ev = LineEvidence(dec, "ABC1")
    assert line_confidence(ev, CalibrationOptions(enabled=False)) == pytest.approx(0.75)
    assert calibrate(0.7, CalibrationOptions(enabled=False)) == 0.7
    assert line_confidence(LineEvidence(replace(dec, text=""), ""), CalibrationOptions()) == 0.0


def test_features_see_spaces_punctuation_and_changes():
    dec = _decoded("AB12", [0.99] * 4)

    def feats(text: str, decoded: Decoded = dec, **kw) -> dict[str, float]:
        return dict(zip(FEATURE_NAMES, line_features(LineEvidence(decoded, text, **kw))))

    plain, spaced, fixed = feats("AB12"), feats("AB 12", retried=True), feats("A.B12", corrected=True)
    assert plain["spaces"] == 0 and spaced["spaces"] == 1 and spaced["recovered_spaces"] == 1
    assert plain["punctuation"] == 0 and fixed["punctuation"] == 1
    assert spaced["retried"] == 1 and plain["retried"] == 0 and fixed["corrected"] == 1
    read = feats("AB 12", replace(dec, text="AB 12", frames=(*dec.frames[:2], (6, 6), *dec.frames[2:])))
    assert read["spaces"] == 1 and read["recovered_spaces"] == 0
    # a recovered space beside a point
    dotted = _decoded("50.00", [0.99] * 5)
    assert feats("50. 00", dotted)["spaces_by_punctuation"] == 1
    assert feats("50.00", dotted)["spaces_by_punctuation"] == 0
    # evenly spaced characters: no gap is near the word-space threshold
    assert plain["margin_not_put"] > 0.2 and plain["margin_put"] == 1.0
    # one gap just at the threshold (1.4 x pitch): the nearest decision has no margin
    frames = ((0, 1), (4, 5), (8, 9), (14, 14), (18, 19), (22, 23))
    tight = replace(_decoded("ABCDEF", [0.99] * 6), frames=frames)
    assert feats("ABCDEF", tight)["margin_not_put"] < 0.1
    # the weakest character's runner-up and a possibly missed character
    weak = replace(_decoded("AB12", [0.99, 0.6, 0.99, 0.99]), missed_after=(0.0, 0.0, 0.7, 0.0))
    w = feats("AB12", weak)
    assert w["logit_runner_up"] == pytest.approx(np.log(0.4 / 0.6)) and w["missed"] == 0.7
    assert w["weak_chars"] == 1


def _generated_rows(n_labels: int) -> list[dict]:
    """Lines of generated labels through the real pipeline, as the study records them."""
    from edge_ocr.ocr.pipeline.det import crop_quad

    rows = []
    opts = GeneratorOptions(degradations=Degradations.mild())
    with open_pipeline("onnx", options=PipelineOptions(), models=V4) as pipe:
        for i in range(n_labels):
            label = generate_label(np.random.default_rng([7, i]), opts)
            for line in label.lines:
                seen: list[LineEvidence] = []
                crop = crop_quad(label.image, np.array(line.box, np.float32))
                with _recording(seen):
                    out = pipe.run(crop, det=False).lines[0]
                rows.append(
                    {"evidence": seen[-1], "text": out.text, "conf": out.confidence, "truth": line.text}
                )
    return rows


def test_features_on_generated_text_fit_the_stored_model(model_store):
    """The stored standardisation was measured on these features: generated lines read by the
    real pipeline must fall in its range (a feature redefined without a refit fails here), and
    the confidence the pipeline reports is the model's output for the recorded evidence."""
    rows = _generated_rows(8)
    assert len(rows) >= 20
    feats = np.array([line_features(r["evidence"]) for r in rows])
    assert np.all(np.isfinite(feats))
    z = (feats - np.array(calibration.MEANS)) / np.array(calibration.SCALES)
    assert np.all(np.abs(z.mean(axis=0)) < 3.0), dict(zip(FEATURE_NAMES, z.mean(axis=0).round(2)))
    for r in rows:
        assert 0.0 <= r["conf"] <= 1.0
        assert r["conf"] == pytest.approx(line_confidence(r["evidence"], CalibrationOptions()))
    right = [r["conf"] for r in rows if r["text"] == r["truth"]]
    wrong = [r["conf"] for r in rows if r["text"] != r["truth"]]
    assert right and np.mean(right) > 0.5
    if wrong:
        assert np.mean(right) > np.mean(wrong)


def test_raw_options_report_the_recognizers_mean(model_store):
    from edge_ocr.ocr.pipeline.det import crop_quad

    label = generate_label(np.random.default_rng([7, 0]), GeneratorOptions())
    crop = crop_quad(label.image, np.array(label.lines[0].box, np.float32))
    with open_pipeline("onnx", options=PipelineOptions.reference(), models=V4) as pipe:
        line = pipe.run(crop, det=False).lines[0]
        decoded = pipe.recognize([crop])[0]
    assert line.confidence == pytest.approx(decoded.confidence)
    assert decoded.confidence == pytest.approx(float(np.mean(decoded.char_confidences)))
    assert (
        len(decoded.char_confidences)
        == len(decoded.missed_after)
        == len(decoded.space_after)
        == len(decoded.text)
    )


def test_study_fitting_recovers_a_known_model():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 2))
    p = 1 / (1 + np.exp(-(2.0 * x[:, 0] - 1.0 * x[:, 1] + 0.5)))
    y = rng.random(4000) < p
    coef, intercept = logistic(x, y.astype(float), ridge=0.0)
    assert coef == pytest.approx([2.0, -1.0], abs=0.2) and intercept == pytest.approx(0.5, abs=0.15)
    knots, values = isotonic(p, y)
    assert np.all(np.diff(values) >= 0) and np.all(np.diff(knots) >= 0)


def test_study_fit_round_trips_through_the_evidence_cache():
    """Evidence written to the study's JSON cache gives the same features back, and a fit on it
    is a valid, monotone model."""
    from dataclasses import asdict

    rows = []
    rng = np.random.default_rng(1)
    for i in range(300):
        probs = list(rng.uniform(0.4, 1.0, size=6))
        dec = _decoded("LOT" + f"{i:03d}", probs)
        rows.append(
            {
                "text": dec.text,
                "retried": False,
                "corrected": False,
                "decoded": asdict(dec),
                "right": min(probs) > 0.5,
            }
        )
    for r in rows[:3]:
        ev = evidence(r)
        assert np.array_equal(line_features(ev), line_features(LineEvidence(ev.decoded, r["text"])))
    feats = np.array([line_features(evidence(r)) for r in rows])
    ok = np.array([r["right"] for r in rows])
    model = fit(feats, ok)
    conf = predict(feats, model)
    assert np.all((conf >= 0) & (conf <= 1))
    assert conf[ok].mean() > conf[~ok].mean() + 0.3
