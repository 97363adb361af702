"""Synthetic factory labels with exact ground truth, for tests, benchmarks, demos and model checks.

    >>> import numpy as np
    >>> from edge_ocr.synth import GeneratorOptions, generate_label
    >>> label = generate_label(np.random.default_rng(7), GeneratorOptions(rotation_deg=5, dot_matrix=True))
    >>> label.image.shape, len(label.lines)
    ((480, 640, 3), 4)

Everything is seeded: the same generator state and options give the same image and boxes.
"""

from edge_ocr.ocr.pipeline.det import crop_quad
from edge_ocr.synth.dataset import write_dataset
from edge_ocr.synth.degrade import Degradations
from edge_ocr.synth.dotmatrix import DotStyle
from edge_ocr.synth.fonts import FontFace, cjk_font, latin_fonts
from edge_ocr.synth.label import (
    STANDARD_OPTIONS,
    GeneratorOptions,
    GroundTruthLine,
    LabelSpec,
    Layout,
    SyntheticLabel,
    check_set,
    generate_label,
    standard_label,
)
from edge_ocr.synth.text import gs1_check_digit, gs1_element_string, is_valid_gtin
from edge_ocr.synth.video import VideoGroundTruth, VideoLabel, write_video

__all__ = [
    "STANDARD_OPTIONS",
    "Degradations",
    "DotStyle",
    "FontFace",
    "GeneratorOptions",
    "GroundTruthLine",
    "LabelSpec",
    "Layout",
    "SyntheticLabel",
    "VideoGroundTruth",
    "VideoLabel",
    "check_set",
    "cjk_font",
    "crop_quad",
    "generate_label",
    "gs1_check_digit",
    "gs1_element_string",
    "is_valid_gtin",
    "latin_fonts",
    "standard_label",
    "write_dataset",
    "write_video",
]
