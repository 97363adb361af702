"""Write synthetic labels as PaddleOCR detection and recognition datasets."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np

from edge_ocr.errors import EdgeOcrError
from edge_ocr.ocr.pipeline.det import crop_quad
from edge_ocr.synth.label import STANDARD_OPTIONS, GeneratorOptions, SyntheticLabel, generate_label

logger = logging.getLogger(__name__)


def write_png(path: Path, image: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", image)
    if not ok:  # pragma: no cover - PNG encoding of uint8 never fails
        raise EdgeOcrError(f"cannot encode {path} as PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    buf.tofile(str(path))


def det_label_line(relpath: str, label: SyntheticLabel) -> str:
    """`relpath\\t[{"transcription": ..., "points": [[x, y] x4]}]` with points rounded to pixels."""
    regions = [
        {"transcription": line.text, "points": [[round(x), round(y)] for x, y in line.box]}
        for line in label.lines
    ]
    return f"{relpath}\t{json.dumps(regions, ensure_ascii=False)}"


def write_dataset(out_dir: Path, count: int, seed: int, options: GeneratorOptions | None = None) -> Path:
    """Write `count` labels: `images/NNNNN.png` and `det_gt.txt` for detection/end to end, and per-line
    perspective crops `rec/images/NNNNN_LL.png` with `rec/rec_gt.txt` for recognition. Label i depends
    only on (seed, i), so a larger count extends a smaller one. Returns out_dir."""
    out_dir = Path(out_dir)
    options = options or STANDARD_OPTIONS
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "rec" / "images").mkdir(parents=True, exist_ok=True)
    det_lines: list[str] = []
    rec_lines: list[str] = []
    for i in range(count):
        label = generate_label(np.random.default_rng([seed, i]), options)
        rel = f"images/{i:05d}.png"
        write_png(out_dir / rel, label.image)
        det_lines.append(det_label_line(rel, label))
        for j, line in enumerate(label.lines):
            crop_rel = f"images/{i:05d}_{j:02d}.png"
            write_png(out_dir / "rec" / crop_rel, crop_quad(label.image, line.box))
            rec_lines.append(f"{crop_rel}\t{line.text}")
    (out_dir / "det_gt.txt").write_text("".join(s + "\n" for s in det_lines), encoding="utf-8")
    (out_dir / "rec" / "rec_gt.txt").write_text("".join(s + "\n" for s in rec_lines), encoding="utf-8")
    logger.info("wrote %d labels (%d lines) to %s", count, len(rec_lines), out_dir)
    return out_dir
