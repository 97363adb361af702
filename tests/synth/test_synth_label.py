"""The synthetic label generator: determinism, exact boxes, text content, options."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

from edge_ocr.errors import ConfigError
from edge_ocr.synth import (
    Degradations,
    GeneratorOptions,
    Layout,
    check_set,
    cjk_font,
    generate_label,
    gs1_check_digit,
    is_valid_gtin,
    standard_label,
)

PLAIN = GeneratorOptions(layouts=(Layout.PLAIN,))


def _label(seed: int, options: GeneratorOptions):
    return generate_label(np.random.default_rng(seed), options)


def _ink_inside_boxes(label) -> float:
    """Share of dark (ink) pixels inside the union of the line boxes."""
    gray = cv2.cvtColor(label.image, cv2.COLOR_BGR2GRAY).astype(np.int16)
    ink = gray < np.median(gray) - 40
    boxes = np.zeros(gray.shape, np.uint8)
    for line in label.lines:
        cv2.fillPoly(boxes, [np.round(np.array(line.box)).astype(np.int32)], 1)
    boxes = cv2.dilate(boxes, np.ones((3, 3), np.uint8))  # rasterisation of the polygon edge
    return float((ink & (boxes > 0)).sum() / max(1, ink.sum()))


def test_same_seed_gives_the_same_label_and_different_seeds_differ():
    opts = GeneratorOptions(rotation_deg=8, dot_matrix=True, degradations=Degradations.all())
    a, b, c = _label(5, opts), _label(5, opts), _label(6, opts)
    assert np.array_equal(a.image, b.image)
    assert a.lines == b.lines and a.fields == b.fields
    assert not np.array_equal(a.image, c.image)
    assert a.image.dtype == np.uint8 and a.image.shape == (480, 640, 3)


def test_options_seed_is_used_without_a_generator():
    opts = GeneratorOptions(seed=11)
    assert np.array_equal(generate_label(None, opts).image, _label(11, opts).image)


@pytest.mark.parametrize(
    "options",
    [
        PLAIN,
        GeneratorOptions(layouts=(Layout.PLAIN,), dot_matrix=True, missing_dots=0.1),
        GeneratorOptions(layouts=(Layout.PLAIN,), inkjet=True),
        GeneratorOptions(layouts=(Layout.PLAIN,), n_lines=7, cap_height=(14, 18)),
    ],
    ids=["text", "dot-matrix", "inkjet", "seven-lines"],
)
def test_boxes_contain_the_rendered_ink(options):
    for seed in range(4):
        label = _label(seed, options)
        assert _ink_inside_boxes(label) > 0.98, (seed, label.texts)


def test_rotation_moves_boxes_with_the_text():
    opts = GeneratorOptions(layouts=(Layout.PLAIN,), rotation_deg=10)
    for seed in range(4):
        label = _label(seed, opts)
        assert 0 < abs(label.angle_deg) <= 10
        assert _ink_inside_boxes(label) > 0.97
        for line in label.lines:
            (x0, y0), (x1, y1), (x2, y2), (x3, y3) = line.box
            # the top edge is tilted by the label's angle (clockwise order from top-left kept)
            tilt = np.degrees(np.arctan2(-(y1 - y0), x1 - x0))
            assert tilt == pytest.approx(label.angle_deg, abs=1e-6)
            assert x1 > x0 and y3 > y0
            assert all(0 <= x <= 640 and 0 <= y <= 480 for x, y in line.box)


def test_lines_are_separated_and_legible():
    for seed in range(6):
        label = _label(seed, GeneratorOptions())
        assert len(label.lines) == 4
        spans = sorted((line.box[0][1], line.box[2][1]) for line in label.lines)
        for (_, bottom), (top, _) in zip(spans, spans[1:]):
            assert top - bottom >= 6
        for line in label.lines:
            assert line.box[2][1] - line.box[0][1] >= 14 + 4  # cap height >= 14 plus padding


def test_text_content_looks_like_factory_labels():
    allowed = re.compile(r"^[A-Za-z0-9 :/\-.()]+$")
    for seed in range(10):
        label = _label(seed, GeneratorOptions(n_lines=6))
        for line in label.lines:
            assert allowed.match(line.text), line.text
            assert line.text == " ".join(line.text.split())  # true single spaces
        assert label.fields["lot"] in " ".join(label.texts)
        if "gs1" in label.fields:
            gs1 = label.fields["gs1"]
            assert gs1 in label.texts
            m = re.match(r"^\(01\)(\d{14})\(17\)(\d{6})\(10\)([A-Z0-9]+)", gs1)
            assert m and is_valid_gtin(m.group(1)) and m.group(1) == label.fields["gtin"]
            assert m.group(3) == label.fields["lot"]


def test_gs1_check_digit_known_values():
    # GS1's own example GTIN 09501101530003 (the brief's "...0008" has a wrong check digit)
    assert gs1_check_digit("0950110153000") == 3
    assert gs1_check_digit("400638133393") == 1  # EAN-13 4006381333931
    assert gs1_check_digit("9638507") == 4  # EAN-8 96385074
    assert gs1_check_digit("03600029145") == 2  # UPC-A 036000291452
    assert is_valid_gtin("09501101530003") and not is_valid_gtin("09501101530008")
    with pytest.raises(ValueError):
        gs1_check_digit("12A4")


def test_standard_label_and_check_set_are_fixed():
    label = standard_label(3)
    assert label.image.shape == (480, 640, 3) and len(label.lines) == 4
    first, again = check_set(count=3), check_set(count=3)
    assert len(first) == 3
    assert all(np.array_equal(a.image, b.image) and a.lines == b.lines for a, b in zip(first, again))
    assert first[0].texts != first[1].texts


def test_cjk_needs_a_cjk_font():
    try:
        cjk_font()
    except ConfigError as exc:
        assert "fonts-noto-cjk" in str(exc)
        with pytest.raises(ConfigError):
            _label(0, GeneratorOptions(cjk=True))
    else:
        labels = [_label(seed, GeneratorOptions(cjk=True)) for seed in range(6)]
        assert any(not line.text.isascii() for label in labels for line in label.lines)


def test_invalid_options_are_refused():
    with pytest.raises(ConfigError, match="cap_height"):
        GeneratorOptions(cap_height=(10, 20))
    with pytest.raises(ConfigError, match="rotation"):
        GeneratorOptions(rotation_deg=90)
    with pytest.raises(ConfigError, match="cannot hold"):
        _label(0, GeneratorOptions(width=100, height=64, cap_height=(30, 30), min_cap_height=30))
