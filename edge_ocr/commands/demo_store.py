"""`edge-ocr demo-store`: build a realistic results store for demos and benchmarks (no Qt needed)."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_ocr.config import default_db_path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo-store",
        help="build a results store of synthetic labels for demos and benchmarks",
        description="Add N demo results to a store (created when missing): real synthetic label images "
        "(saved in <db>.images/), their lines and boxes, varied readings, verdicts, review states, sources, "
        "recipes and times over the last days. Demo data is not queued for sync.",
    )
    p.add_argument("--rows", type=int, default=1000, help="number of results to add (default: 1000)")
    p.add_argument(
        "--db", type=Path, default=None, help="database file (default: $EDGE_OCR_DB or the per-user one)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--pool", type=int, default=64, help="distinct label images to render (default: 64)")
    p.add_argument(
        "--days", type=float, default=14.0, help="spread results over this many days (default: 14)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge_ocr.errors import ConfigError
    from edge_ocr.store.demo import build_demo_store

    if args.rows < 0:
        raise ConfigError("--rows must be 0 or more")
    db = args.db if args.db is not None else default_db_path()
    report = build_demo_store(db, args.rows, seed=args.seed, pool_size=args.pool, days=args.days)
    print(
        f"{report.db}: added {report.rows} results in {report.seconds:.1f} s (images in {report.images_dir})"
    )
    return 0
