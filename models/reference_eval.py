"""Score the reference pipeline (paddleocr 2.10 on paddlepaddle) on label folders with exactly the
metrics of `edge-ocr eval`, so docs/BENCHMARKS.md can put our engines beside it.

    python -m edge_ocr_models.reference_eval ../shared/eval/dotmatrix ../shared/eval/sroie
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from edge_ocr.evaluation.runner import run_eval
from edge_ocr.types import OcrResult, TextLine
from edge_ocr_models.reference import reference_ocr


def reference_as_result(image: np.ndarray, det: bool) -> OcrResult:
    (lines,) = reference_ocr([image], det=det)
    h, w = image.shape[:2]
    full = ((0.0, 0.0), (w - 1.0, 0.0), (w - 1.0, h - 1.0), (0.0, h - 1.0))
    out = tuple(
        TextLine(text=text, confidence=float(score), box=tuple(quad) if quad else full)  # type: ignore[arg-type]
        for text, score, quad in lines
    )
    return OcrResult(lines=out, image_size=(w, h), engine="reference", model="paddleocr-2.10/PP-OCRv4")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edge_ocr_models.reference_eval")
    ap.add_argument("paths", nargs="+", type=Path)
    args = ap.parse_args(argv)
    for path in args.paths:
        report = run_eval(path, reference_as_result)
        out = report.to_dict()
        out["engine"] = "reference"
        print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
