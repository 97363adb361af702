"""`edge-ocr eval`: score the pipeline on PaddleOCR-format label folders."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from edge_ocr.commands.common import add_engine_args, open_from_args
from edge_ocr.commands.ocr import add_print_arg
from edge_ocr.evaluation.runner import run_eval


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="score accuracy on labelled images (rec_gt.txt or det_gt.txt)",
        description="Score OCR on PaddleOCR-format label folders: rec_gt.txt (path<TAB>text; each image is "
        "one line, read without detection) or det_gt.txt (path<TAB>JSON regions; end to end). Recognition "
        "sets report line accuracy, 1-NED and CER; end-to-end sets report detection P/R/H, end-to-end H "
        "and word P/R/F.",
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="label folders or label files")
    case = p.add_mutually_exclusive_group()
    case.add_argument("--case-insensitive", dest="ci", action="store_true", default=None)
    case.add_argument("--case-sensitive", dest="ci", action="store_false")
    p.add_argument("--json", action="store_true", help="print one JSON report per set")
    p.add_argument(
        "--fields",
        action="store_true",
        help="end-to-end sets with key information (key/<image stem>.json: company, date, address, total): "
        "also read each receipt's fields and report precision, recall and F1 per field and overall, and the "
        "time extraction adds to the OCR's",
    )
    p.add_argument(
        "--cls",
        action="store_true",
        default=None,
        help="classify line orientation (default: as the pipeline does)",
    )
    add_engine_args(p)
    add_print_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with open_from_args(args) as pipe:
        for path in args.paths:
            progress = tqdm(desc=f"eval {path}", unit="image", disable=not sys.stderr.isatty(), leave=False)

            def tick(done: int, total: int, progress: tqdm = progress) -> None:
                progress.total = total
                progress.update(done - progress.n)

            report = run_eval(
                path,
                lambda img, det: pipe.run(img, det=det, cls=args.cls),
                case_insensitive=args.ci,
                progress=tick,
                fields=args.fields,
            )
            progress.close()
            if args.json:
                out = report.to_dict()
                out["engine"] = pipe.engine_name
                out["model"] = pipe.model_id
                print(json.dumps(out, ensure_ascii=False))
            else:
                print(report.to_markdown())
                print(f"engine {pipe.engine_name}, model {pipe.model_id}, {report.elapsed_s:.1f} s\n")
    return 0
