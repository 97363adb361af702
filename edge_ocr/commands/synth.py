"""`edge-ocr synth`: write a synthetic label dataset (images + PaddleOCR label files)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from edge_ocr.synth import GeneratorOptions, write_dataset
from edge_ocr.synth.receipt import write_receipts


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth",
        help="generate synthetic factory labels (or receipts) with exact ground truth",
        description="Write OUT/images/*.png, OUT/det_gt.txt and OUT/rec/ (line crops + rec_gt.txt). With "
        "--receipts: receipts and invoices (six locales, varied layouts, fonts, currencies and date formats), "
        "OUT/images/*.png, OUT/det_gt.txt and OUT/key/*.json (company, date, address and total as printed), "
        "the layout `edge-ocr eval OUT --fields` scores.",
    )
    p.add_argument(
        "--receipts", action="store_true", help="receipts with field ground truth instead of labels"
    )
    p.add_argument("out", type=Path, help="output folder")
    p.add_argument("--count", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--lines", type=int, default=4, help="text lines per label")
    p.add_argument("--dot-matrix", action="store_true", help="dot-matrix print")
    p.add_argument("--rotation", type=float, default=0.0, help="max rotation in degrees")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.receipts:
        write_receipts(args.out, args.count, args.seed)
        print(f"wrote {args.count} receipts to {args.out}")
        return 0
    opts = replace(
        GeneratorOptions(),
        width=args.width,
        height=args.height,
        n_lines=args.lines,
        dot_matrix=args.dot_matrix,
        rotation_deg=args.rotation,
    )
    out = write_dataset(args.out, args.count, args.seed, opts)
    print(f"wrote {args.count} labels to {out}")
    return 0
