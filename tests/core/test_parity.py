"""Every engine gives the reference pipeline's text (paddleocr 2.10 on paddlepaddle, same models),
computed live on a generated set; and Paddle Lite survives inputs of decreasing size."""

from __future__ import annotations

import numpy as np
import pytest
from support import assert_lite_survives

from edge_ocr.ocr.pipeline.runner import PipelineOptions
from edge_ocr.ocr.reader import open_pipeline
from edge_ocr.synth import Degradations, GeneratorOptions, generate_label

V4 = "ppocrv4-mobile"  # these tests pin PP-OCRv4 behaviour (golden text, parity with PaddleOCR 2.10)


@pytest.fixture(scope="module")
def parity_set():
    from edge_ocr_models.reference import reference_ocr

    opts = GeneratorOptions(rotation_deg=5.0, degradations=Degradations.mild())
    labels = [generate_label(np.random.default_rng([77, i]), opts) for i in range(6)]
    reference = reference_ocr([label.image for label in labels])
    return labels, [[text for text, _, _ in lines] for lines in reference]


@pytest.mark.parametrize("engine", [pytest.param("lite", marks=pytest.mark.lite), "onnx", "paddle"])
def test_fp32_engines_give_the_reference_text(engine, parity_set, model_store):
    labels, reference = parity_set
    with open_pipeline(engine, "fp32", options=PipelineOptions.reference(), models=V4) as pipe:
        got = [[line.text for line in pipe.run(label.image).lines] for label in labels]
    assert got == reference


@pytest.mark.lite
@pytest.mark.parametrize(("engine", "variant"), [("lite", "int16"), ("lite", "int8")])
def test_quantized_sets_stay_close_to_the_reference(engine, variant, parity_set, model_store):
    from edge_ocr.evaluation.metrics import levenshtein

    labels, reference = parity_set
    errors = chars = 0
    with open_pipeline(engine, variant, options=PipelineOptions.reference(), models=V4) as pipe:
        for label, ref in zip(labels, reference, strict=True):
            got = "\n".join(line.text for line in pipe.run(label.image).lines)
            want = "\n".join(ref)
            errors += levenshtein(got.replace(" ", ""), want.replace(" ", ""))
            chars += len(want.replace(" ", ""))
    assert errors / chars <= 0.05, (
        f"{engine}/{variant}: {errors}/{chars} characters differ from the reference"
    )


@pytest.mark.lite
def test_lite_survives_decreasing_input_sizes(model_store):
    """Shrinking inputs corrupt Paddle Lite's heap (double free / segfault); run in a child process
    so a crash fails this test instead of killing the test run."""
    sizes = [(1280, 960), (960, 720), (640, 480), (480, 360), (320, 240), (640, 480), (200, 160)]
    assert_lite_survives("ppocrv4-mobile", sizes * 2, timeout=600)


@pytest.mark.lite
def test_lite_gives_the_same_answer_whatever_came_before(model_store):
    """Growing inputs give wrong text in Paddle Lite and shrinking ones corrupt the heap: the engine
    must answer for an input exactly as a fresh predictor would, after larger and smaller ones."""
    from edge_ocr.types import ModelRole

    rng = np.random.default_rng(3)
    a = rng.standard_normal((1, 3, 48, 600)).astype(np.float32)
    b = rng.standard_normal((1, 3, 48, 320)).astype(np.float32)
    c = rng.standard_normal((1, 3, 48, 900)).astype(np.float32)
    with open_pipeline("lite", "fp32", models=V4) as pipe:
        session = pipe.engine.session(ModelRole.REC)
        first = session.run(a)
        session.run(b)
        session.run(c)
        again = session.run(a)
    with open_pipeline("lite", "fp32", models=V4) as fresh:
        alone = fresh.engine.session(ModelRole.REC).run(a)
    np.testing.assert_array_equal(first, alone)
    np.testing.assert_array_equal(again, alone)
