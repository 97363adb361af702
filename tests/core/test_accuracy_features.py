"""Word spaces, print-aware retries, generic label patterns and calibrated confidence."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image, ImageDraw

from edge_ocr.ocr.pipeline.calibration import CalibrationOptions, calibrate
from edge_ocr.ocr.pipeline.patterns import PatternOptions, apply_patterns
from edge_ocr.ocr.pipeline.rec import Decoded
from edge_ocr.ocr.pipeline.retry import RetryOptions
from edge_ocr.ocr.pipeline.runner import PipelineOptions
from edge_ocr.ocr.pipeline.spacing import SpacingOptions, recover_spaces
from edge_ocr.ocr.reader import open_pipeline
from edge_ocr.synth import GeneratorOptions, generate_label, latin_fonts

V4 = "ppocrv4-mobile"  # these tests pin PP-OCRv4 behaviour (golden text, parity with PaddleOCR 2.10)

SPACED = [
    "LOT 4711 EXP 2027",
    "Wood Glue Heavy Duty",
    "Sunflower Oil 500 ml",
    "USE BY 12 MAR 2027",
]


def _render(text: str, size: int = 40) -> np.ndarray:
    from PIL import ImageFont

    face = next(f for f in latin_fonts() if "Sans" in f.path.name and "Mono" not in f.path.name)
    font = ImageFont.truetype(str(face.path), size)
    w = int(font.getlength(text)) + 2 * size
    img = Image.new("RGB", (w, int(size * 1.8)), (250, 250, 250))
    ImageDraw.Draw(img).text((size, size * 0.35), text, font=font, fill=(15, 15, 15))
    return np.asarray(img)[:, :, ::-1].copy()


@pytest.mark.parametrize("text", SPACED)
def test_word_spaces_recovered_on_generated_text(text, model_store):
    with open_pipeline("onnx", models=V4) as pipe:
        assert pipe.run(_render(text), det=False).lines[0].text == text


def test_spaces_help_overall_on_generated_labels(model_store):
    labels = [generate_label(np.random.default_rng([5, i]), GeneratorOptions()) for i in range(8)]
    raw_ok = full_ok = total = 0
    with (
        open_pipeline("onnx", options=PipelineOptions.reference(), models=V4) as raw,
        open_pipeline("onnx", models=V4) as full,
    ):
        for label in labels:
            want = [line.text for line in label.lines]
            raw_ok += sum(
                a == b for a, b in zip([x.text for x in raw.run(label.image).lines], want, strict=False)
            )
            full_ok += sum(
                a == b for a, b in zip([x.text for x in full.run(label.image).lines], want, strict=False)
            )
            total += len(want)
    assert full_ok >= raw_ok + total // 4, (raw_ok, full_ok, total)


def test_cjk_lines_get_no_spurious_spaces():
    # a CJK line with uneven character spacing, as the recognizer aligns it
    text = "生产日期批号有效期至"
    frames = tuple(
        (i * 6 + (4 if i % 3 == 0 else 0), i * 6 + 1 + (4 if i % 3 == 0 else 0)) for i in range(len(text))
    )
    dec = Decoded(text=text, confidence=0.9, frames=frames, n_frames=80)
    assert recover_spaces(dec, SpacingOptions()) == text
    mixed = "批号LOT4711"
    dec = Decoded(
        text=mixed, confidence=0.9, frames=tuple((i * 5, i * 5 + 1) for i in range(len(mixed))), n_frames=80
    )
    assert " " not in recover_spaces(dec, SpacingOptions())


def test_explicit_spaces_are_kept_and_disabled_means_untouched():
    dec = Decoded(
        text="AB CD", confidence=0.9, frames=((0, 1), (3, 4), (6, 6), (9, 10), (12, 13)), n_frames=20
    )
    assert recover_spaces(dec, SpacingOptions()) == "AB CD"
    assert recover_spaces(dec, SpacingOptions(enabled=False)) == "AB CD"


@pytest.mark.parametrize(
    ("raw", "fixed"),
    [
        ("L0T 201707025G", "LOT 201707025G"),
        ("5N: 8816832203", "SN: 8816832203"),
        ("EXP 05/2O21", "EXP 05/2021"),
        ("USE 8Y: 12/2O27", "USE BY: 12/2027"),
        ("PR0D: 28.O9.2026", "PROD: 28.09.2026"),
    ],
)
def test_generic_patterns_fix_captions_and_dates(raw, fixed):
    result = apply_patterns(raw, PatternOptions())
    assert result.text == fixed
    assert result.changes


@pytest.mark.parametrize("free", ["SOLD 50 B0X", "Zincx 20", "CO 2O", "EXP 89/2826", "Room 1O1", "B00K"])
def test_generic_patterns_leave_free_text_alone(free):
    assert apply_patterns(free, PatternOptions()).text == free


def test_pattern_corrections_keep_the_raw_reading():
    """The runner reports the corrected text and keeps the reading it corrected."""
    from edge_ocr.ocr.engines.fake import FakeEngine
    from edge_ocr.ocr.pipeline.runner import OcrPipeline

    class Misreading(OcrPipeline):
        def recognize(self, crops):
            return [Decoded(text="L0T 4711", confidence=0.97, frames=(), n_frames=40) for _ in crops]

    with Misreading(FakeEngine()) as pipe:
        line = pipe.run(_render("LOT 4711"), det=False).lines[0]
    assert line.text == "LOT 4711"
    assert line.raw_text == "L0T 4711" and line.corrections
    assert line.to_dict()["raw_text"] == "L0T 4711"


def test_retries_rescue_dot_matrix_print_within_budget(model_store):
    opts = GeneratorOptions(dot_matrix=True, missing_dots=0.15)
    labels = [generate_label(np.random.default_rng([11, i]), opts) for i in range(6)]
    no_retry = replace(PipelineOptions(), retry=RetryOptions(enabled=False))
    ok_plain = ok_retry = 0
    with (
        open_pipeline("onnx", options=no_retry, models=V4) as plain,
        open_pipeline("onnx", models=V4) as retrying,
    ):
        for label in labels:
            want = [line.text for line in label.lines]
            a = plain.run(label.image)
            b = retrying.run(label.image)
            ok_plain += sum(x.text == w for x, w in zip(a.lines, want, strict=False))
            ok_retry += sum(x.text == w for x, w in zip(b.lines, want, strict=False))
            if "retry" in b.timings_ms:
                # the budget is a number of variant crops, at least every variant for one line
                assert RetryOptions().budget_reads(len(b.lines)) >= len(RetryOptions().variants)
    assert ok_retry >= ok_plain


def test_calibration_is_monotone_and_bounded():
    opts = CalibrationOptions()
    xs = np.linspace(0, 1, 101)
    ys = [calibrate(x, opts) for x in xs]
    assert all(0.0 <= y <= 1.0 for y in ys)
    assert all(b >= a for a, b in zip(ys, ys[1:], strict=False))
    assert calibrate(0.7, CalibrationOptions(enabled=False)) == 0.7


def test_no_word_spaces_flag_keeps_the_recognizers_own_spacing(tmp_path, capsys, model_store):
    """`--no-word-spaces` (what the per-set "without" figures in docs/BENCHMARKS.md use) turns
    word-space recovery off and nothing else."""
    import json

    import cv2

    from edge_ocr.cli import build_parser, main
    from edge_ocr.commands.common import options_adjust

    image = _render("THANK YOU PLEASE COME AGAIN", size=24)
    path = tmp_path / "line.png"
    cv2.imwrite(str(path), image)
    base = ["ocr", "--json", "--no-det", "--engine", "onnx", "--models", V4, str(path)]
    unspaced = replace(PipelineOptions(), spacing=replace(PipelineOptions().spacing, enabled=False))
    assert (
        options_adjust(build_parser().parse_args([*base, "--no-word-spaces"]))(PipelineOptions()) == unspaced
    )
    assert main(base) == 0
    assert main([*base, "--no-word-spaces"]) == 0
    got = [json.loads(line)["data"]["lines"][0]["text"] for line in capsys.readouterr().out.splitlines()]
    with (
        open_pipeline("onnx", models=V4) as full,
        open_pipeline("onnx", options=unspaced, models=V4) as plain,
    ):
        want = [pipe.run(image, det=False).lines[0].text for pipe in (full, plain)]
    assert got == want
