"""PP-OCRv6 raw mode reproduces RapidOCR 3.10 with its defaults, run live on the same model files
(the built ppocrv6-small and ppocrv6-tiny ONNX sets): same lines, same text, same scores, boxes
within a pixel, on generated labels (plain, rotated dot-matrix, scaled past RapidOCR's 2000-pixel
bound, cut to strips it pads) and on line crops read without detection."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_ocr.ocr.engine import EngineOptions, ModelFiles
from edge_ocr.ocr.engines.onnx import OnnxEngine
from edge_ocr.ocr.modelstore import ModelStore
from edge_ocr.ocr.pipeline.det import crop_quad
from edge_ocr.ocr.pipeline.runner import OcrPipeline, PipelineOptions
from edge_ocr.synth import Degradations, GeneratorOptions, check_set, generate_label

FAMILIES = ("ppocrv6-small", "ppocrv6-tiny")


def built_v6_files(family: str) -> ModelFiles:
    """The family's ONNX fp32 set as built, whether or not its build check activated it (this
    parity is what that check measures)."""
    store = ModelStore()
    for s in store.sets() if store.exists() else []:
        if s.family == family and s.engine == "onnx" and s.variant == "fp32" and s.target == "x86":
            paths = {role: store.root / s.files[role]["path"] for role in ("det", "rec", "cls", "dict")}
            return ModelFiles(
                set_id=s.set_id,
                engine="onnx",
                variant="fp32",
                det=paths["det"],
                rec=paths["rec"],
                cls=paths["cls"],
                rec_dict=paths["dict"],
                family=family,
                model_config=s.raw.get("model_config") or {},
            )
    pytest.fail(f"no {family} ONNX set in {store.root}: run `edge-ocr models build` (scripts/test.sh does)")


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    out = [label.image for label in check_set(seed=4242, count=6)]
    dots = GeneratorOptions(rotation_deg=8.0, dot_matrix=True, degradations=Degradations.mild())
    out += [generate_label(np.random.default_rng([6, i]), dots).image for i in range(3)]
    out.append(cv2.resize(out[0], None, fx=3.5, fy=3.5))  # 2240 px wide: RapidOCR shrinks it to 2000
    out.append(np.ascontiguousarray(out[1][180:250]))  # a wide strip: padded above and below
    return out


@pytest.fixture(scope="module")
def line_crops() -> list[np.ndarray]:
    """Ground-truth line crops, some under RapidOCR's 30-pixel minimum side (it enlarges those)."""
    crops = []
    for label in check_set(seed=4343, count=3):
        for line in label.lines:
            crop = crop_quad(label.image, np.asarray(line.box, dtype=np.float32))
            crops += [crop, cv2.resize(crop, None, fx=0.5, fy=0.5)]
    return crops


def _assert_same(family: str, ref: list, ours: list, where: str) -> None:
    assert [t for t, _, _ in ours] == [t for t, _, _ in ref], f"{family} {where}: texts differ"
    for (_, s_ref, q_ref), (_, s_ours, q_ours) in zip(ref, ours):
        assert s_ours == pytest.approx(s_ref, abs=1e-6), f"{family} {where}: scores differ"
        if q_ref:
            gap = np.abs(np.asarray(q_ref, float) - np.asarray(q_ours, float)).max()
            assert gap <= 1.0, f"{family} {where}: boxes {gap:.2f} px apart"


@pytest.mark.parametrize("family", FAMILIES)
def test_raw_mode_reads_exactly_what_rapidocr_3_10_reads(family, images, line_crops):
    from edge_ocr_models.reference import rapidocr_reference

    files = built_v6_files(family)
    want = rapidocr_reference(images, files)
    want_rec = rapidocr_reference(line_crops, files, det=False)
    assert sum(map(len, want)) >= 30, "the generated labels should give RapidOCR lines to compare"
    options = PipelineOptions.for_family(family, files.model_config, raw=True)
    assert options == PipelineOptions.rapidocr_3_10()
    with OcrPipeline(OnnxEngine(files, EngineOptions(threads=2)), options) as pipe:
        for i, (img, ref) in enumerate(zip(images, want, strict=True)):
            got = [(ln.text, ln.confidence, ln.box) for ln in pipe.run(img).lines]
            _assert_same(family, ref, got, f"image {i}")
        for i, (crop, ref) in enumerate(zip(line_crops, want_rec, strict=True)):
            got = [(ln.text, ln.confidence, ()) for ln in pipe.run(crop, det=False).lines]
            _assert_same(family, ref, got, f"crop {i} ({crop.shape[1]}x{crop.shape[0]})")


def test_rapidocr_reference_is_offline_and_reads_the_given_files(tmp_path: Path):
    """Missing files are refused before RapidOCR could fall back to downloading its own."""
    from edge_ocr.errors import ModelError
    from edge_ocr_models.reference import rapidocr_reference

    files = built_v6_files("ppocrv6-small")
    missing = ModelFiles(
        set_id="x", engine="onnx", variant="fp32", det=tmp_path / "det.onnx", rec=files.rec,
        cls=files.cls, rec_dict=files.rec_dict, family="ppocrv6-small",
    )  # fmt: skip
    with pytest.raises(ModelError, match="missing"):
        rapidocr_reference([np.zeros((32, 32, 3), np.uint8)], missing)
