"""Regenerate golden_text.json: `.venv/bin/python tests/core/make_golden.py` (needs the build extra).

Float sets must give the reference's text; each quantized set's own reading is recorded so that a
change in it is noticed and reviewed (its accuracy is checked separately by the model build)."""

import json
from pathlib import Path

from edge_ocr.ocr.pipeline.runner import PipelineOptions
from edge_ocr.ocr.reader import open_pipeline
from edge_ocr.synth import standard_label
from edge_ocr_models.reference import reference_ocr

V4 = "ppocrv4-mobile"  # these tests pin PP-OCRv4 behaviour (golden text, parity with PaddleOCR 2.10)

SEEDS = list(range(6))
QUANTIZED = [("lite", "int16"), ("lite", "int8"), ("onnx", "int8")]


def main() -> None:
    labels = [standard_label(seed=s) for s in SEEDS]
    reference = reference_ocr([label.image for label in labels])
    out = {
        "about": "Reference text (paddleocr 2.10 on paddlepaddle, PP-OCRv4 mobile) of "
        "edge_ocr.synth.standard_label(seed); quantized sets: their own reading, recorded when checked in.",
        "seeds": SEEDS,
        "reference": [[text for text, _, _ in lines] for lines in reference],
    }
    for engine, variant in QUANTIZED:
        with open_pipeline(engine, variant, options=PipelineOptions.reference(), models=V4) as pipe:
            out[f"{engine}/{variant}"] = [[line.text for line in pipe.run(lab.image).lines] for lab in labels]
    path = Path(__file__).with_name("golden_text.json")
    path.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
