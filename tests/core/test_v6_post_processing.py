"""Our post-processing on the PP-OCRv6 families (issue 12 item 4): golden exact text of the default
pipeline on generated labels for both families, the deterministic retry budget, the caption
spacing rule and the calibration fitted per family. PP-OCRv4's settings stay as they were."""

from __future__ import annotations

import numpy as np
import pytest

from edge_ocr.ocr.pipeline import calibration
from edge_ocr.ocr.pipeline.calibration import CalibrationOptions
from edge_ocr.ocr.pipeline.patterns import SPACED_CAPTIONS, PatternOptions, apply_patterns
from edge_ocr.ocr.pipeline.retry import RetryOptions
from edge_ocr.ocr.pipeline.runner import OcrPipeline, PipelineOptions
from edge_ocr.ocr.reader import open_pipeline
from edge_ocr.synth import Degradations, GeneratorOptions, generate_label, standard_label
from edge_ocr.types import ModelRole

V6 = ("ppocrv6-small", "ppocrv6-tiny")
GOLDEN_SEEDS = (0, 1, 2, 3, 4, 5)
DOT_SEEDS = (0, 1, 2)

#: what the default pipeline reads on standard_label(seed) for GOLDEN_SEEDS, then on the dot-matrix
#: labels of `_dot_labels`, per family (ONNX fp32)
GOLDEN: dict[str, list[list[str]]] = {
    "ppocrv6-small": [
        ["Wood Glue Heavy Duty M8 x 40", "LOT: L000186", "EXP 2027/11", "S/N: 0091275557"],
        ["Paracetamol Capsules 100 ml", "BATCH: D89F3842", "EXP 11/2027", "MFG: 2025-05-10"],
        ["Cable Ties", "L: L840368", "USE BY: 2027-10-31", "S/N: 0072856052"],
        [
            "Silicone Sealant Refill 5 L",
            "L: V85A0346",
            "EXP 2027-12-31",
            "(01)08717014385444(17)271231(10)V85A0346",
        ],
        [
            "Silicone Sealant Industrial",
            "BATCH: ZZ046",
            "BB: 2028/03",
            "(01)03005168253906(17)280331(10)ZZ046",
        ],
        ["Magnesium x 30", "LOT L562902", "USE BY: JUN 2026", "S/N: 0038336888"],
        ["Orange Juice Organic 1 L", "LOT: 6013560", "USE BY: 11/2026", "PROD: 2025-02-11"],
        ["Ibuprofen", "LOT LD40227", "EXP: NOV 2026", "S/N: 0073142098"],
        ["Zinc Chewable", "LOT M14N9B77", "EXP: 2026-06-30", "SN: BH42193228"],
    ],
    "ppocrv6-tiny": [
        ["Wood Glue Heavy Duty M8 x 40", "LOT: L000186", "EXP 2027/11", "S/N: 0091275557"],
        ["Paracetamol Capsules 100 ml", "BATCH: D89F3842", "EXP 11/2027", "MFG: 2025-05-10"],
        ["Cable Ties", "L: L840368", "USE BY: 2027-10-31", "S/N: 0072856052"],
        [
            "Silicone Sealant Refill 5 L",
            "L: V85A0346",
            "EXP 2027-12-31",
            "(01)08717014385444(17)271231(10)V85A0346",
        ],
        [
            "Silicone Sealant Industrial",
            "BATCH: ZZ046",
            "BB: 2028/03",
            "(01)03005168253906(17)280331(10)ZZ046",
        ],
        ["Magnesium x 30", "LOT L562902", "USE BY: JUN 2026", "S/N: 0038336888"],
        ["Orange Juice Organic 1 L", "LOT: 6013560", "USE BY: 11/2026", "PRO0:2025-02-11"],
        ["Ibuprofen", "LOT L040227", "EXP: NOV 2026", "S/N: 007314209B"],
        ["Zinc Chewable", "LOT M14N9D77", "EXP: 2026-06-30", "SN: 日H4219322日"],
    ],
}


def _dot_labels():
    opts = GeneratorOptions(dot_matrix=True, degradations=Degradations.mild())
    return [generate_label(np.random.default_rng([31, i]), opts) for i in DOT_SEEDS]


@pytest.fixture(scope="module")
def labels():
    return [standard_label(seed=s) for s in GOLDEN_SEEDS] + _dot_labels()


@pytest.mark.parametrize("family", V6)
def test_golden_text_of_the_default_pipeline(family, labels):
    """Exact text of `edge-ocr ocr --models FAMILY` (every default post-processing step on)."""
    with open_pipeline("onnx", "fp32", models=family) as pipe:
        got = [[line.text for line in pipe.run(label.image).lines] for label in labels]
        assert pipe.model_id == f"{family}/onnx/fp32"
    assert got == GOLDEN[family]


@pytest.mark.parametrize("family", V6)
def test_the_default_reads_most_generated_lines_exactly(family, labels):
    exact = total = 0
    for label, got in zip(labels, GOLDEN[family], strict=True):
        want = [line.text for line in label.lines]
        exact += sum(g == w for g, w in zip(got, want, strict=False))
        total += len(want)
    assert exact / total >= 0.75, (exact, total)


def test_retry_budget_is_a_number_of_re_reads_not_time():
    opts = RetryOptions()
    assert opts.budget_reads(1) == len(opts.variants)  # a lone line may try every variant
    assert opts.budget_reads(10) == round(opts.budget * 10)
    assert RetryOptions(budget=0).budget_reads(10) == 0
    assert RetryOptions(enabled=False).budget_reads(10) == 0


class _Counting:
    def __init__(self, engine):
        self.engine, self.rec_crops = engine, 0
        real = engine.session

        def session(role):
            inner = real(role)
            if role is not ModelRole.REC:
                return inner
            outer = self

            class Counted:
                def run(self, x):
                    outer.rec_crops += x.shape[0]
                    return inner.run(x)

                def run_each(self, x):
                    outer.rec_crops += x.shape[0]
                    return inner.run_each(x)

            return Counted()

        engine.session = session


def test_retries_read_the_same_crops_whatever_the_load(labels):
    """Two runs of the same image read the same number of crops and give the same text (the
    budget no longer depends on how fast the recognizer was)."""
    image = labels[-1].image
    runs = []
    with open_pipeline("onnx", "fp32", models="ppocrv6-tiny") as base:
        opts = base.options
        for _ in range(2):
            pipe = OcrPipeline(base.engine, opts)
            counter = _Counting(base.engine)
            result = pipe.run(image)
            runs.append((counter.rec_crops, [line.text for line in result.lines]))
            base.engine.session = type(base.engine).session.__get__(base.engine)
    assert runs[0] == runs[1]


def test_caption_spacing():
    opts = PatternOptions(space_after_captions=SPACED_CAPTIONS)
    assert apply_patterns("EXP:09/2020", opts).text == "EXP: 09/2020"
    assert apply_patterns("EXP.06/20", opts).text == "EXP. 06/20"
    assert apply_patterns("BEST BY:1FEB2020", opts).text == "BEST BY: 1FEB2020"
    for kept in ("LOT#S18F070", "LOT: L12", "DATE:12/01/2019", "TEXP:1", "EXP:", "18.77"):
        assert apply_patterns(kept, opts).text == kept
    assert apply_patterns("EXP:09/2020", PatternOptions()).text == "EXP:09/2020"  # off by default (v4)


@pytest.mark.parametrize("family", V6)
def test_each_v6_family_has_its_own_calibration(family):
    fitted = CalibrationOptions.for_family(family)
    assert family in calibration.FAMILY_FITS
    assert fitted != CalibrationOptions()
    assert list(fitted.values) == sorted(fitted.values)  # monotone
    assert 0.0 <= fitted.values[0] <= fitted.values[-1] <= 1.0
    assert PipelineOptions.for_family(family).calibration == fitted


def test_v4_keeps_its_calibration_and_patterns():
    v4 = PipelineOptions.for_family("ppocrv4-mobile")
    assert v4.calibration == CalibrationOptions()
    assert v4.patterns == PatternOptions()
