"""Dot-matrix print found on `auto` (issue 21 item 9): the check on the detector's boxes (pure, no
models) and, with the real PP-OCRv6 models, the second detection on the dots-joined image."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from edge_ocr.ocr.pipeline.dots import DetCheck, DotOptions, check_boxes, prefer_joined, runs_lines_together
from edge_ocr.synth import Degradations, GeneratorOptions, generate_label
from edge_ocr.synth.label import Layout, SyntheticLabel

#: (width, height, capital-letter height range): small, standard and large labels
SIZES = ((400, 300, (14.0, 18.0)), (640, 480, (16.0, 28.0)), (1280, 960, (32.0, 56.0)))

#: prints: dot-matrix and inkjet coders (separate dots), laser (crisp solid type) and thermal
#: (solid type, blurred, faded, noisy)
PRINTS = {
    "dot-matrix": GeneratorOptions(dot_matrix=True),
    "inkjet": GeneratorOptions(inkjet=True),
    "laser": GeneratorOptions(),
    "thermal": GeneratorOptions(degradations=Degradations(blur=True, low_contrast=True, noise=True)),
}


def _label(print_name: str, size: tuple[int, int, tuple[float, float]], seed: int) -> SyntheticLabel:
    w, h, cap = size
    opts = replace(PRINTS[print_name], width=w, height=h, cap_height=cap, min_cap_height=min(14.0, cap[0]))
    return generate_label(np.random.default_rng([2109, seed]), opts)


def _coded(label: SyntheticLabel) -> list[bool]:
    """Which ground-truth lines are coder lines (dotted when the print is)."""
    return [line.field not in ("product", "extra") for line in label.lines]


def _boxes(label: SyntheticLabel, keep: list[bool]) -> list[np.ndarray]:
    return [np.asarray(line.box, np.float32) for line, k in zip(label.lines, keep) if k]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("print_name", sorted(PRINTS))
def test_every_line_boxed_is_not_suspect(print_name: str, size) -> None:
    """Every print at every size: when the detector boxed every line there is no second detection."""
    opts = DotOptions()
    for seed in range(4):
        label = _label(print_name, size, seed)
        check = check_boxes(label.image, _boxes(label, [True] * len(label.lines)), opts)
        assert check.boxes == len(label.lines) and check.line_boxes >= 1
        assert not check.suspect(opts), (seed, check)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("print_name", sorted(PRINTS))
def test_lines_left_unboxed_make_the_image_suspect(print_name: str, size) -> None:
    """The coder lines left out (what PP-OCRv6 does to separate dots): text-sized ink outside every
    box, and a detection that boxes them again is preferred."""
    opts = DotOptions()
    for seed in range(4):
        label = _label(print_name, size, seed)
        coded = _coded(label)
        assert any(coded) and not all(coded)
        missed = check_boxes(label.image, _boxes(label, [not c for c in coded]), opts)
        assert missed.suspect(opts), (seed, missed)
        found = check_boxes(label.image, _boxes(label, [True] * len(label.lines)), opts)
        assert prefer_joined(missed, found, opts)
        assert not prefer_joined(found, missed, opts) and not prefer_joined(found, found, opts)


def test_blank_and_cluttered_images_are_not_suspect() -> None:
    opts = DotOptions()
    blank = np.full((480, 640, 3), 230, np.uint8)
    empty = check_boxes(blank, [], opts)
    assert (empty.boxes, empty.unexplained) == (0, 0.0) and not empty.suspect(opts)
    # most of the ink outside the boxes: a scene's clutter, not text left out
    clutter = DetCheck(boxes=3, line_boxes=3, unexplained=0.95, elapsed_ms=0.0)
    assert not clutter.suspect(opts)
    # ... unless nothing was found at all
    assert replace(clutter, boxes=0, line_boxes=0).suspect(opts)
    # a label (a few boxes) is suspect with less ink left out than a page or a receipt
    label = DetCheck(boxes=4, line_boxes=4, unexplained=0.05, elapsed_ms=0.0)
    assert label.suspect(opts)
    assert not replace(label, boxes=40, line_boxes=38).suspect(opts)
    assert replace(label, boxes=40, line_boxes=38, unexplained=0.12).suspect(opts)


def test_a_joined_detection_must_box_what_was_left_out() -> None:
    first = DetCheck(boxes=30, line_boxes=25, unexplained=0.2, elapsed_ms=0.0)
    # the ink left out stays out: not the dots that were missed
    assert not prefer_joined(first, replace(first, boxes=31, unexplained=0.15))
    assert not prefer_joined(first, replace(first, boxes=0, line_boxes=0, unexplained=0.0))
    assert prefer_joined(first, replace(first, boxes=28, unexplained=0.01))
    nothing = DetCheck(boxes=0, line_boxes=0, unexplained=1.0, elapsed_ms=0.0)
    assert prefer_joined(nothing, replace(first, unexplained=0.1))


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)


def test_lines_run_together_by_joining_are_found() -> None:
    lines = [_rect(10, 10, 300, 30), _rect(10, 36, 280, 56)]  # two receipt lines
    assert runs_lines_together(lines, [_rect(8, 8, 302, 58)])  # joined into one block
    assert not runs_lines_together(lines, [_rect(8, 8, 302, 32), _rect(8, 34, 282, 58)])
    # a line broken into pieces (characters, a colon's two dots) joined into one line
    pieces = [_rect(10, 10, 22, 30), _rect(26, 10, 38, 30), _rect(42, 12, 46, 16), _rect(42, 24, 46, 28)]
    assert not runs_lines_together(pieces, [_rect(8, 8, 120, 32)])
    # pieces of one line side by side, a little offset: the same row
    assert not runs_lines_together([_rect(10, 10, 100, 30), _rect(110, 14, 200, 34)], [_rect(8, 8, 202, 36)])


def test_layouts_with_bars_and_borders_are_not_suspect() -> None:
    """Barcode bars, borders and rules are not text-sized ink: a plain label with every line boxed
    is not suspect in any layout."""
    opts = DotOptions()
    for layout in Layout:
        for seed in range(3):
            label = generate_label(
                np.random.default_rng([2110, seed]),
                GeneratorOptions(layouts=(layout,), degradations=Degradations.mild()),
            )
            check = check_boxes(label.image, _boxes(label, [True] * len(label.lines)), opts)
            assert not check.suspect(opts), (layout, seed, check)
