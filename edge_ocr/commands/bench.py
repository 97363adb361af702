"""`edge-ocr bench`: speed and memory per engine and model variant, with RapidOCR as the peer."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_ocr.benchmarks.ocr_bench import (
    folder_markdown,
    measure_folder,
    rows_to_json,
    run_bench,
    to_markdown,
    update_section,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="measure load time, latency, throughput and memory of every engine",
        description="Benchmark every installed model family, runnable engine and model variant on 640x480 "
        "synthetic labels with 4 lines and on receipt-sized pages: model load time, p50/p95 latency, images/s "
        "on all cores (one process per core), peak RSS. The peers, RapidOCR 3.10 and rapidocr-onnxruntime "
        "1.4.4 with their defaults, are measured in the same run. With --folder DIR, also whole processes "
        "over a folder: `edge-ocr ocr DIR` against RapidOCR 3.10.",
    )
    p.add_argument("--engines", default=None, help="comma-separated engines (default: all that run here)")
    p.add_argument("--variants", default=None, help="comma-separated variants (default: fp32,int16,int8)")
    p.add_argument(
        "--models",
        default=None,
        metavar="FAMILIES",
        help="comma-separated model families (default: every installed one)",
    )
    p.add_argument("--no-receipts", action="store_true", help="skip the receipt-sized page workload")
    p.add_argument(
        "--folder",
        type=Path,
        default=None,
        metavar="DIR",
        help="also time whole processes over DIR: edge-ocr ocr (defaults, and each --models family) vs RapidOCR 3.10",
    )
    p.add_argument("--images", type=int, default=16, help="distinct label images")
    p.add_argument("--repeat", type=int, default=3, help="passes over the images per worker")
    p.add_argument(
        "--no-peer", action="store_true", help="skip the peers (RapidOCR 3.10, rapidocr-onnxruntime 1.4.4)"
    )
    p.add_argument(
        "--line",
        action="store_true",
        help="instead: trigger to verdict on the production line, over MQTT and OPC UA (docs/LINE.md), "
        "for --models (default: ppocrv6-tiny,ppocrv6-small)",
    )
    p.add_argument("--triggers", type=int, default=100, help="--line: triggers per family and channel")
    p.add_argument("--models-dir", type=Path, default=None)
    p.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    p.add_argument(
        "--write", type=Path, default=None, metavar="FILE", help="update the bench section of FILE"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    def say(msg: str) -> None:
        print(f"bench: {msg}", file=sys.stderr, flush=True)

    if args.line:
        return run_line(args, say)

    info, rows = run_bench(
        engines=args.engines.split(",") if args.engines else None,
        variants=args.variants.split(",") if args.variants else None,
        families=args.models.split(",") if args.models else None,
        n_images=args.images,
        repeat=args.repeat,
        models_dir=args.models_dir,
        with_peer=not args.no_peer,
        with_receipts=not args.no_receipts,
        progress=say,
    )
    md = to_markdown(info, rows)
    if args.folder is not None:
        say(f"whole processes over {args.folder}")
        fams = [f for f in (args.models.split(",") if args.models else []) if f]
        md += "\n" + folder_markdown(
            args.folder, measure_folder(args.folder, families=fams, models_dir=args.models_dir)
        )
    print(rows_to_json(info, rows) if args.json else md)
    if args.write:
        update_section(args.write, "bench", md)
        say(f"updated {args.write}")
    return 0


def run_line(args: argparse.Namespace, say) -> int:
    import json

    from edge_ocr.benchmarks import line_bench
    from edge_ocr.benchmarks.ocr_bench import machine_info

    families = args.models.split(",") if args.models else ["ppocrv6-tiny", "ppocrv6-small"]
    figures = line_bench.bench_line(families, args.triggers, say)
    info = machine_info()
    md = line_bench.to_markdown(info, figures)
    print(json.dumps({"machine": info, **figures}, indent=2) if args.json else md)
    if args.write:
        update_section(args.write, "line-bench", md)
        say(f"updated {args.write}")
    return 0
