"""The pipeline on every engine and model set: golden text on generated labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_ocr.ocr.pipeline.runner import PipelineOptions
from edge_ocr.ocr.reader import open_pipeline
from edge_ocr.synth import GeneratorOptions, generate_label, standard_label
from edge_ocr.types import OcrResult

V4 = "ppocrv4-mobile"  # these tests pin PP-OCRv4 behaviour (golden text, parity with PaddleOCR 2.10)

GOLDEN = json.loads((Path(__file__).with_name("golden_text.json")).read_text(encoding="utf-8"))


def _squash(text: str) -> str:
    return "".join(text.split())


@pytest.fixture(scope="module")
def golden_labels():
    return [standard_label(seed=s) for s in GOLDEN["seeds"]]


def test_every_engine_kind_is_built_and_runs_here(runnable_sets, model_store):
    """Every engine whose wheel exists for this Python: Lite on CPython 3.10 x86-64 (where it must
    run), ONNX and Paddle everywhere."""
    from edge_ocr.ocr.engines.lite import lite_wheel_exists

    engines = {e for e, _ in runnable_sets}
    assert {"onnx", "paddle"} <= engines, runnable_sets
    assert ("onnx", "fp32") in runnable_sets
    if lite_wheel_exists():
        assert {("lite", "fp32"), ("lite", "int16"), ("lite", "int8")} <= set(runnable_sets)
    else:
        assert "lite" not in engines
    # the INT8 ONNX set is built and checked; whether it is active is the check's decision
    (onnx_int8,) = [s for s in model_store.sets() if s.set_id == "onnx/int8"]
    assert onnx_int8.accuracy.get("checked") and (onnx_int8.active or onnx_int8.reason)


def test_a_set_that_failed_its_check_refuses_to_open_and_says_why(model_store):
    from edge_ocr.errors import ModelError

    inactive = [s for s in model_store.sets() if s.target == "x86" and not s.active]
    for s in inactive:
        with pytest.raises(ModelError, match="not active"):
            open_pipeline(s.engine, s.variant, models=s.family)


@pytest.mark.parametrize(
    ("engine", "variant"),
    [
        pytest.param("lite", "fp32", marks=pytest.mark.lite),
        ("onnx", "fp32"),
        ("paddle", "fp32"),
        pytest.param("lite", "int16", marks=pytest.mark.lite),
        pytest.param("lite", "int8", marks=pytest.mark.lite),
    ],
)
def test_golden_text(engine, variant, runnable_sets, golden_labels):
    """Exact text, as the models read it (no post-processing): float sets give the reference's
    text; quantized sets give the text recorded for them."""
    assert (engine, variant) in runnable_sets, f"model set {engine}/{variant} is not built or not active"
    want_all = GOLDEN["reference"] if variant == "fp32" else GOLDEN[f"{engine}/{variant}"]
    with open_pipeline(engine, variant, options=PipelineOptions.reference(), models=V4) as pipe:
        for label, want in zip(golden_labels, want_all, strict=True):
            result = pipe.run(label.image)
            assert [line.text for line in result.lines] == want, f"{engine}/{variant}"
            assert result.engine == engine
            assert result.model == f"{V4}/{engine}/{variant}"


def test_post_processing_reads_the_labels_as_printed(golden_labels):
    """With word-space recovery and retries on (the default), most lines read exactly as printed,
    and every line at least has the printed characters in order except for true misreads."""
    exact = total = 0
    with open_pipeline("onnx", "fp32", models=V4) as pipe:
        for label in golden_labels:
            got = [line.text for line in pipe.run(label.image).lines]
            want = [line.text for line in label.lines]
            assert len(got) == len(want)
            exact += sum(g == w for g, w in zip(got, want, strict=True))
            total += len(want)
    raw = sum(
        g == w.text
        for ref, label in zip(GOLDEN["reference"], golden_labels, strict=True)
        for g, w in zip(ref, label.lines, strict=True)
    )
    assert exact > raw, (exact, raw)
    assert exact / total >= 0.75, (exact, total)


def test_result_shape_and_boxes(model_store):
    label = standard_label(seed=3)
    with open_pipeline("onnx", "fp32", models=V4) as pipe:
        result = pipe.run(label.image)
    assert isinstance(result, OcrResult)
    assert result.image_size == (640, 480)
    assert set(result.timings_ms) >= {"det", "rec", "total"}
    for line, gt in zip(result.lines, label.lines, strict=True):
        assert 0.0 <= line.confidence <= 1.0
        xs, ys = [p[0] for p in line.box], [p[1] for p in line.box]
        gxs, gys = [p[0] for p in gt.box], [p[1] for p in gt.box]
        # detected box overlaps the true box (centre inside it, sizes comparable)
        cx, cy = sum(xs) / 4, sum(ys) / 4
        assert min(gxs) - 4 <= cx <= max(gxs) + 4 and min(gys) - 4 <= cy <= max(gys) + 4
        # clockwise from top-left
        assert line.box[0][0] < line.box[1][0] and line.box[1][1] < line.box[2][1]


def _ink_box(image: np.ndarray, box) -> list[tuple[int, int]]:
    """The bounding box of the dark ink inside a generated line's (padded) ground-truth box."""
    import cv2

    xs, ys = [int(p[0]) for p in box], [int(p[1]) for p in box]
    x0, y0 = min(xs), min(ys)
    gray = cv2.cvtColor(image[y0 : max(ys) + 1, x0 : max(xs) + 1], cv2.COLOR_BGR2GRAY)
    _, ink = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    yy, xx = np.nonzero(ink)
    left, top, right, bottom = x0 + xx.min(), y0 + yy.min(), x0 + xx.max() + 1, y0 + yy.max() + 1
    return [(left, top), (right, top), (right, bottom), (left, bottom)]


def test_reported_outlines_fit_the_ink_and_the_crops_are_unchanged(model_store):
    """The reported box is the detection grown less than the crop recognition reads: it lies inside
    the crop, fits the printed ink at least as well, and the text read is the same."""
    from dataclasses import replace

    from edge_ocr.evaluation.polygon import covered_fraction, iou

    labels = [standard_label(seed=s) for s in (3, 5, 8)]
    base = PipelineOptions()
    crops_reported = replace(base, det=replace(base.det, outline_unclip_ratio=None))
    with open_pipeline("onnx", "fp32", models=V4) as pipe:
        regions = [pipe.detect(label.image) for label in labels]
        tight = [pipe.run(label.image) for label in labels]
    with open_pipeline("onnx", "fp32", options=crops_reported, models=V4) as pipe:
        loose = [pipe.run(label.image) for label in labels]
    fit_outline, fit_crop = [], []
    for label, found, a, b in zip(labels, regions, tight, loose, strict=True):
        assert [line.text for line in a.lines] == [line.text for line in b.lines]
        assert [line.box for line in b.lines] == [tuple(map(tuple, d.quad.tolist())) for d in found]
        for d in found:
            assert covered_fraction(d.outline.tolist(), d.quad.tolist()) > 0.99
            assert iou(d.outline.tolist(), d.quad.tolist()) < 0.97  # grown less, not the same box
            truth = max(label.lines, key=lambda line: iou(d.quad.tolist(), line.box))
            ink = _ink_box(label.image, truth.box)
            fit_outline.append(iou(d.outline.tolist(), ink))
            fit_crop.append(iou(d.quad.tolist(), ink))
    assert min(fit_outline) > 0.8 and np.mean(fit_outline) > np.mean(fit_crop), (fit_outline, fit_crop)
    assert PipelineOptions.reference().det.outline_unclip_ratio is None  # PaddleOCR reports the crop


def test_no_det_reads_whole_image_as_one_line(model_store):
    from edge_ocr.ocr.pipeline.det import crop_quad

    label = standard_label(seed=1)
    crop = crop_quad(label.image, np.array(label.lines[1].box, dtype=np.float32))
    with open_pipeline("onnx", models=V4) as pipe:
        result = pipe.run(crop, det=False)
    assert len(result.lines) == 1
    assert _squash(result.lines[0].text) == _squash(label.lines[1].text)
    assert result.lines[0].box[0] == (0.0, 0.0)


def test_cls_turns_upside_down_lines(model_store):
    label = standard_label(seed=2)
    flipped = np.ascontiguousarray(label.image[::-1, ::-1])
    with open_pipeline("onnx", models=V4) as pipe:
        plain = pipe.run(flipped, cls=False)
        turned = pipe.run(flipped, cls=True)
    want = sorted(_squash(line.text) for line in label.lines)
    assert sorted(_squash(line.text) for line in turned.lines) == want
    assert sorted(_squash(line.text) for line in plain.lines) != want


def test_fake_engine_is_deterministic_and_finds_lines():
    label = generate_label(np.random.default_rng(5), GeneratorOptions())
    with open_pipeline("fake") as pipe:
        a = pipe.run(label.image)
        b = pipe.run(label.image.copy())
    assert a.lines == b.lines
    assert len(a.lines) >= 2
    assert a.engine == "fake"


def test_grayscale_and_alpha_inputs(model_store):
    label = standard_label(seed=0)
    gray = label.image.mean(axis=2).astype(np.uint8)
    rgba = np.concatenate([label.image, np.full(label.image.shape[:2] + (1,), 255, np.uint8)], axis=2)
    with open_pipeline("onnx", models=V4) as pipe:
        ref = [_squash(line.text) for line in pipe.run(label.image).lines]
        assert [_squash(line.text) for line in pipe.run(gray).lines] == ref
        assert [_squash(line.text) for line in pipe.run(rgba).lines] == ref
