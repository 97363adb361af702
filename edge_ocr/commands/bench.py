"""`edge-ocr bench`: speed and memory per engine and model variant, with RapidOCR as the peer."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_ocr.benchmarks.ocr_bench import rows_to_json, run_bench, to_markdown, update_section


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="measure load time, latency, throughput and memory of every engine",
        description="Benchmark every runnable engine and model variant on 640x480 synthetic labels with 4 "
        "lines: model load time, p50/p95 latency, images/s on all cores (one process per core), peak RSS; "
        "rapidocr-onnxruntime 1.4.4 is measured in the same run as the peer.",
    )
    p.add_argument("--engines", default=None, help="comma-separated engines (default: all that run here)")
    p.add_argument("--variants", default=None, help="comma-separated variants (default: fp32,int16,int8)")
    p.add_argument("--images", type=int, default=16, help="distinct label images")
    p.add_argument("--repeat", type=int, default=3, help="passes over the images per worker")
    p.add_argument("--no-peer", action="store_true", help="skip rapidocr-onnxruntime")
    p.add_argument("--models-dir", type=Path, default=None)
    p.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    p.add_argument(
        "--write", type=Path, default=None, metavar="FILE", help="update the bench section of FILE"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    def say(msg: str) -> None:
        print(f"bench: {msg}", file=sys.stderr, flush=True)

    info, rows = run_bench(
        engines=args.engines.split(",") if args.engines else None,
        variants=args.variants.split(",") if args.variants else None,
        n_images=args.images,
        repeat=args.repeat,
        models_dir=args.models_dir,
        with_peer=not args.no_peer,
        progress=say,
    )
    md = to_markdown(info, rows)
    print(rows_to_json(info, rows) if args.json else md)
    if args.write:
        update_section(args.write, "bench", md)
        say(f"updated {args.write}")
    return 0
