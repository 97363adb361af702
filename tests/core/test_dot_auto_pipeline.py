"""`auto` print through the real PP-OCRv6 pipeline (issue 21 item 9): generated dot-matrix labels
whose dotted lines the detector misses as printed are read as with the print declared, and plain
labels read exactly as before, without a second detection."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from edge_ocr.ocr.pipeline.runner import OcrPipeline
from edge_ocr.ocr.reader import open_pipeline
from edge_ocr.synth import Degradations, GeneratorOptions, generate_label

pytestmark = pytest.mark.models

#: generated dot-matrix labels (seed [7000, i], mild degradations) on which PP-OCRv6 small, reading
#: the dots as printed, boxes only some of the lines: it breaks a line into characters (17), runs
#: the dotted lines into one block (22, 37) or misses them (62)
MISSED = (17, 22, 37, 62)


@pytest.fixture(scope="module")
def pipe(model_store) -> Iterator[OcrPipeline]:
    with open_pipeline("onnx", "fp32", models="ppocrv6-small", threads=1) as p:
        yield p


def _texts(result) -> list[str]:
    return [line.text for line in result.lines]


def _squeezed(texts) -> set[str]:
    return {t.replace(" ", "") for t in texts}


@pytest.mark.parametrize("seed", MISSED)
def test_auto_reads_missed_dot_matrix_lines_as_the_declared_print(pipe: OcrPipeline, seed: int) -> None:
    label = generate_label(
        np.random.default_rng([7000, seed]),
        GeneratorOptions(dot_matrix=True, degradations=Degradations.mild()),
    )
    as_printed = pipe.run(label.image, print_profile="plain")
    auto = pipe.run(label.image)
    declared = pipe.run(label.image, print_profile="dot-matrix")
    truth = _squeezed(label.texts)
    # the dots as printed leave lines unread: what `auto` did before
    assert len(truth & _squeezed(_texts(as_printed))) < len(truth)
    # now `auto` reads them as the declared print does: it found the dots, detected again with
    # them joined and read the image as dot-matrix print
    assert _texts(auto) == _texts(declared)
    assert len(truth & _squeezed(_texts(auto))) > len(truth & _squeezed(_texts(as_printed)))
    assert len(auto.lines) == len(label.lines)
    assert "det_joined" in auto.timings_ms


@pytest.mark.parametrize(
    ("width", "height", "cap"),
    [(400, 300, (14.0, 18.0)), (640, 480, (16.0, 28.0)), (1280, 960, (32.0, 56.0))],
)
def test_plain_labels_read_as_before_without_a_second_detection(
    pipe: OcrPipeline, width: int, height: int, cap: tuple[float, float]
) -> None:
    for seed in range(4):
        opts = GeneratorOptions(
            width=width,
            height=height,
            cap_height=cap,
            min_cap_height=min(14.0, cap[0]),
            degradations=Degradations.mild(),
        )
        label = generate_label(np.random.default_rng([2111, seed]), opts)
        auto = pipe.run(label.image)
        plain = pipe.run(label.image, print_profile="plain")
        assert "dots" in auto.timings_ms and "det_joined" not in auto.timings_ms, seed
        assert _texts(auto) == _texts(plain), seed
