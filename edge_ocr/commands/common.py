"""Options shared by the subcommands that run OCR."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_ocr.ocr.engines.registry import ENGINE_CHOICES
from edge_ocr.ocr.imageio import IMAGE_SUFFIXES

VARIANTS = ("fp32", "int16", "int8")


def add_engine_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("engine")
    g.add_argument(
        "--engine", choices=ENGINE_CHOICES, default="auto", help="inference engine (default: auto)"
    )
    g.add_argument(
        "--model-variant", choices=VARIANTS, default="fp32", help="model precision (default: fp32)"
    )
    g.add_argument("--models-dir", type=Path, default=None, help="built models (default: per-user data dir)")
    g.add_argument("--threads", type=int, default=None, help="threads per engine (default: all cores)")
    g.add_argument(
        "--retry-budget",
        type=float,
        default=None,
        metavar="MS",
        help="time per image for re-reading low-confidence lines (default: 250; 0 turns retries off)",
    )
    g.add_argument(
        "--no-word-spaces",
        action="store_true",
        help="keep the recognizer's own spacing: no word-space recovery or Latin punctuation rules",
    )
    g.add_argument(
        "--raw",
        action="store_true",
        help="the models' reading only, as the reference pipeline gives it (no word-space recovery, "
        "retries, pattern corrections or calibration)",
    )


def pipeline_options(args: argparse.Namespace):  # -> PipelineOptions | None
    """The pipeline options the engine arguments ask for (None: the defaults)."""
    from dataclasses import replace

    from edge_ocr.ocr.pipeline.runner import PipelineOptions

    if args.raw:
        return PipelineOptions.reference()
    if args.retry_budget is None and not args.no_word_spaces:
        return None
    options = PipelineOptions()
    if args.retry_budget is not None:
        options = replace(
            options,
            retry=replace(options.retry, budget_ms=args.retry_budget, enabled=args.retry_budget > 0),
        )
    if args.no_word_spaces:
        options = replace(options, spacing=replace(options.spacing, enabled=False))
    return options


def expand_inputs(paths: list[str]) -> list[Path]:
    """Files as given; folders expanded recursively to the image files they hold, sorted."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES))
        else:
            out.append(p)
    return out
