"""Choose the word-space recovery parameters from data, never from single images.

Collects, for every pair of adjacent characters the recognizer read correctly (ignoring spaces),
the CTC geometry between them and whether the ground truth has a space there. Sources:
generated labels (true spacing known exactly), and the dev sets' ground-truth line crops
(SROIE lines; ICDAR 2015 and IIIT 5K words, where any space is wrong; dot-matrix lines).

    python -m studies.spacing_study --engine onnx [--eval-dir ../shared/eval]

prints the pair counts and the F1 of the space decision over a grid of thresholds.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edge_ocr.evaluation.labels import GtRegion, read_det_labels, read_rec_labels
from edge_ocr.evaluation.metrics import match_image
from edge_ocr.ocr.imageio import read_image
from edge_ocr.ocr.pipeline import spacing
from edge_ocr.ocr.pipeline.det import crop_quad
from edge_ocr.ocr.pipeline.rec import Decoded
from edge_ocr.ocr.pipeline.runner import OcrPipeline
from edge_ocr.ocr.reader import open_pipeline


@dataclass(frozen=True)
class LineSample:
    source: str
    truth: str
    decoded: Decoded
    crop: np.ndarray


Crops = list[tuple[str, np.ndarray, str]]


def _line_crops(source: str, image: np.ndarray, regions: list[GtRegion], pipe: OcrPipeline | None) -> Crops:
    """Ground-truth line crops; with `pipe`, the crops of the pipeline's own detected boxes that match
    a region (IoU >= 0.5, as the end-to-end score matches them), with that region's text."""
    if pipe is None:
        return [
            (source, crop_quad(image, np.array(r.points, np.float32)), r.text)
            for r in regions
            if not r.ignore
        ]
    found = pipe.detect(image)
    m = match_image(regions, [("", d.outline.tolist()) for d in found])
    return [
        (source, crop_quad(image, found[p].quad), m.care[g].text) for g, p in sorted(m.det_matches.items())
    ]


def _generated(n: int, pipe: OcrPipeline | None) -> Crops:
    from edge_ocr.synth import Degradations, GeneratorOptions, generate_label

    out = []
    opts = GeneratorOptions(degradations=Degradations.mild())
    for i in range(n):
        label = generate_label(np.random.default_rng([99, i]), opts)
        regions = [GtRegion(text=line.text, points=tuple(tuple(p) for p in line.box)) for line in label.lines]
        out += _line_crops("generated", label.image, regions, pipe)
    return out


def _e2e_crops(label_file: Path, source: str, limit: int, pipe: OcrPipeline | None) -> Crops:
    out = []
    for sample in read_det_labels(label_file)[:limit]:
        out += _line_crops(source, read_image(sample.path), list(sample.regions), pipe)
    return out


def _rec_crops(label_file: Path, source: str, limit: int) -> list[tuple[str, np.ndarray, str]]:
    return [(source, read_image(s.path), s.text) for s in read_rec_labels(label_file)[:limit]]


def collect(
    engine: str, eval_dir: Path | None, n_generated: int, limit: int, detected: bool = False
) -> list[LineSample]:
    """Line samples; `detected`: lines cropped from the pipeline's own boxes (what it reads in use:
    DB boxes are looser than the ground truth's) instead of the ground-truth quads."""
    out = []
    with open_pipeline(engine) as pipe:
        det_pipe = pipe if detected else None
        crops = _generated(n_generated, det_pipe)
        if eval_dir is not None:
            if (eval_dir / "sroie").is_dir():
                crops += _e2e_crops(eval_dir / "sroie" / "det_gt.txt", "sroie", limit, det_pipe)
            if (eval_dir / "icdar2015").is_dir():
                crops += _e2e_crops(eval_dir / "icdar2015" / "det_gt.txt", "icdar2015", limit, det_pipe)
            if (eval_dir / "dotmatrix").is_dir():
                crops += _rec_crops(eval_dir / "dotmatrix" / "rec_gt.txt", "dotmatrix", limit)
            if (eval_dir / "iiit5k").is_dir():
                crops += _rec_crops(eval_dir / "iiit5k" / "rec_gt.txt", "iiit5k", limit)
        for i in range(0, len(crops), 64):
            chunk = crops[i : i + 64]
            for (source, crop, truth), dec in zip(
                chunk, pipe.recognize([c for _, c, _ in chunk]), strict=True
            ):
                out.append(LineSample(source, truth, dec, crop))
    return out


def pair_labels(sample: LineSample) -> list[bool] | None:
    """For each adjacent pair of non-space decoded characters: does the truth have a space there?
    None when the decoded characters differ from the truth's (ignoring spaces and case)."""
    chars = [c for c in spacing.fold_full_width(sample.decoded.text) if c != " "]
    truth = sample.truth.strip()
    if "".join(chars).lower() != "".join(truth.split()).lower() or len(chars) < 2:
        return None
    labels = []
    t = 0
    for _ in range(len(chars) - 1):
        while truth[t] == " ":
            t += 1
        t += 1  # past chars[k]
        labels.append(t < len(truth) and truth[t] == " ")
    return labels


def score(samples: list[LineSample], opts: spacing.SpacingOptions) -> dict[str, dict[str, float]]:
    per: dict[str, list[int]] = {}
    for s in samples:
        labels = pair_labels(s)
        if labels is None:
            continue
        got = spacing.space_after(s.decoded, opts, s.crop)
        if got is None:
            got = [False] * len(labels)
        tp = sum(1 for g, y in zip(got, labels, strict=True) if g and y)
        fp = sum(1 for g, y in zip(got, labels, strict=True) if g and not y)
        fn = sum(1 for g, y in zip(got, labels, strict=True) if not g and y)
        exact = int(got == labels)
        acc = per.setdefault(s.source, [0, 0, 0, 0, 0])
        for i, v in enumerate((tp, fp, fn, exact, 1)):
            acc[i] += v
    out = {}
    for source, (tp, fp, fn, exact, n) in per.items():
        p = tp / (tp + fp) if tp + fp else 1.0
        r = tp / (tp + fn) if tp + fn else 1.0
        out[source] = {
            "lines": n,
            "spaces": tp + fn,
            "precision": round(p, 4),
            "recall": round(r, 4),
            "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0,
            "lines_exact": round(exact / n, 4) if n else 0.0,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", default="onnx")
    ap.add_argument("--eval-dir", type=Path, default=None)
    ap.add_argument("--generated", type=int, default=150)
    ap.add_argument("--limit", type=int, default=1000, help="images per dev set")
    ap.add_argument(
        "--detected",
        action="store_true",
        help="read the pipeline's detected line crops, not the ground truth's",
    )
    ap.add_argument("--cache", type=Path, default=None, help="pickle of the samples: reused when present")
    args = ap.parse_args(argv)
    if args.cache and args.cache.is_file():
        with args.cache.open("rb") as fh:
            samples = pickle.load(fh)
    else:
        samples = collect(args.engine, args.eval_dir, args.generated, args.limit, args.detected)
        if args.cache:
            with args.cache.open("wb") as fh:
                pickle.dump(samples, fh)
    base = spacing.SpacingOptions()
    print(json.dumps({"defaults": score(samples, base)}, indent=1))
    for ratio in (1.2, 1.3, 1.4, 1.5, 1.6):
        for min_gap in (1.0, 2.0):
            for gap_height in (0.1, 0.15, 0.2, 0.25, 0.3):
                opts = replace(base, gap_ratio=ratio, min_blank_frames=min_gap, min_gap_height=gap_height)
                res = score(samples, opts)
                summary = {k: (v["f1"], v["precision"], v["lines_exact"]) for k, v in res.items()}
                print(f"gap_ratio={ratio} min_blank={min_gap} min_gap_height={gap_height}: {summary}")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
