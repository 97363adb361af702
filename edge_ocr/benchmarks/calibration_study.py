"""Fit the line-confidence calibration (`edge_ocr/pipeline/calibration.py`) from data.

Reads every ground-truth line of the dev sets (recognition crops; the end-to-end sets' line and
word crops) and of generated labels through the full pipeline (`det=False`, word spaces and
retries on, calibration off), records (raw confidence, exact-match after collapsing whitespace),
fits a monotone map by isotonic regression on half of the lines and reports, on the other half,
how often lines above 0.9 are right before and after calibration.

    python -m edge_ocr.benchmarks.calibration_study --eval-dir ../shared/eval [--engine onnx]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from edge_ocr.benchmarks.spacing_study import _e2e_crops, _generated, _rec_crops
from edge_ocr.evaluation.runner import default_case_insensitive
from edge_ocr.ocr import open_pipeline
from edge_ocr.pipeline.calibration import CalibrationOptions, calibrate
from edge_ocr.pipeline.runner import PipelineOptions


def _norm(text: str, ci: bool) -> str:
    t = " ".join(text.split())
    return t.lower() if ci else t


def collect(
    engine: str, eval_dir: Path | None, n_generated: int, feature: str = "min"
) -> list[tuple[str, float, bool]]:
    crops = [(s, c, t, False) for s, c, t in _generated(n_generated)]
    if eval_dir is not None:
        for name, kind in (("dotmatrix", "rec"), ("iiit5k", "rec"), ("sroie", "e2e"), ("icdar2015", "e2e")):
            folder = eval_dir / name
            if not folder.is_dir():
                continue
            ci = default_case_insensitive(folder / "x")
            items = (
                _rec_crops(folder / "rec_gt.txt", name, 10**6)
                if kind == "rec"
                else _e2e_crops(folder / "det_gt.txt", name, 10**6)
            )
            crops += [(s, c, t, ci) for s, c, t in items]
    # identity curve: the reported confidence is then the raw feature the curve will read
    options = replace(
        PipelineOptions(),
        calibration=CalibrationOptions(feature=feature, knots=(0.0, 1.0), values=(0.0, 1.0)),
    )
    out = []
    with open_pipeline(engine, options=options) as pipe:
        for source, crop, truth, ci in crops:
            line = pipe.run(crop, det=False).lines[0]
            out.append((source, float(line.confidence), _norm(line.text, ci) == _norm(truth, ci)))
    return out


def isotonic(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pool-adjacent-violators: a non-decreasing fit of y on sorted x; returns (knots, values)."""
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], y[order].astype(float)
    blocks: list[list[float]] = []  # [sum_y, count, min_x, max_x]
    for xi, yi in zip(xs, ys, strict=True):
        blocks.append([yi, 1.0, xi, xi])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s, n, lo, hi = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += n
            blocks[-1][3] = hi
    knots = np.array([(b[2] + b[3]) / 2 for b in blocks])
    values = np.array([b[0] / b[1] for b in blocks])
    return knots, values


def thin(knots: np.ndarray, values: np.ndarray, step: float = 0.01) -> tuple[list[float], list[float]]:
    """A small table with the curve's shape: a knot wherever the value has moved by `step`."""
    keep = [0]
    for i in range(1, len(knots)):
        if abs(values[i] - values[keep[-1]]) >= step:
            keep.append(i)
    if keep[-1] != len(knots) - 1:
        keep.append(len(knots) - 1)
    return [round(float(knots[i]), 4) for i in keep], [round(float(values[i]), 4) for i in keep]


def above(conf: np.ndarray, ok: np.ndarray, t: float = 0.9) -> tuple[int, float]:
    mask = conf > t
    return int(mask.sum()), float(ok[mask].mean()) if mask.any() else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", default="onnx")
    ap.add_argument("--eval-dir", type=Path, default=None)
    ap.add_argument("--generated", type=int, default=120)
    ap.add_argument("--feature", choices=("min", "mean"), default="min")
    ap.add_argument("--rows", type=Path, default=None, help="cache of the collected rows (JSON)")
    args = ap.parse_args(argv)
    if args.rows is not None and args.rows.is_file():
        rows = [tuple(r) for r in json.loads(args.rows.read_text())]
    else:
        rows = collect(args.engine, args.eval_dir, args.generated, args.feature)
        if args.rows is not None:
            args.rows.write_text(json.dumps(rows))
    conf = np.array([r[1] for r in rows])
    ok = np.array([r[2] for r in rows])
    fit, held = np.arange(len(rows)) % 2 == 0, np.arange(len(rows)) % 2 == 1
    knots, values = thin(*isotonic(conf[fit], ok[fit]))
    opts = CalibrationOptions(feature=args.feature, knots=tuple(knots), values=tuple(values))
    cal_held = np.array([calibrate(c, opts) for c in conf[held]])
    report = {
        "lines": len(rows),
        "per_source": {
            s: {
                "lines": int(sum(1 for r in rows if r[0] == s)),
                "accuracy": round(float(np.mean([r[2] for r in rows if r[0] == s])), 4),
            }
            for s in sorted({r[0] for r in rows})
        },
        "held_out_raw_above_0.9": above(conf[held], ok[held]),
        "held_out_calibrated_above_0.9": above(cal_held, ok[held]),
        "feature": args.feature,
        "knots": knots,
        "values": values,
        "reliability_held_out": [
            {
                "bin": f"{lo:.1f}-{lo + 0.1:.1f}",
                "lines": int(m.sum()),
                "mean_calibrated": round(float(cal_held[m].mean()), 3),
                "accuracy": round(float(ok[held][m].mean()), 3),
            }
            for lo in np.arange(0.0, 1.0, 0.1)
            if (m := (cal_held >= lo) & (cal_held < lo + 0.1 + (1e-9 if lo >= 0.9 else 0))).any()
        ],
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
