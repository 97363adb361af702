"""Options shared by the subcommands that run OCR."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_ocr.ocr.imageio import IMAGE_SUFFIXES
from edge_ocr.ocr.reader import ENGINE_CHOICES

VARIANTS = ("fp32", "int16", "int8")


def add_engine_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("engine")
    g.add_argument(
        "--engine", choices=ENGINE_CHOICES, default="auto", help="inference engine (default: auto)"
    )
    g.add_argument(
        "--model-variant", choices=VARIANTS, default="fp32", help="model precision (default: fp32)"
    )
    g.add_argument(
        "--models",
        metavar="FAMILY",
        default=None,
        help="model family: ppocrv6-small, ppocrv6-tiny or ppocrv4-mobile (default: the installed "
        "default, see `edge-ocr models list`)",
    )
    g.add_argument("--models-dir", type=Path, default=None, help="built models (default: per-user data dir)")
    g.add_argument("--threads", type=int, default=None, help="threads per engine (default: all cores)")
    g.add_argument(
        "--retry-budget",
        type=float,
        default=None,
        metavar="N",
        help="re-reads of low-confidence line crops per image, as a multiple of its line count (at least "
        "one line's worth of every retry variant; default: 4 on ppocrv4-mobile, 0 (off) on the PP-OCRv6 "
        "families; 0 turns retries off)",
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


def options_adjust(args: argparse.Namespace):  # -> Callable[[PipelineOptions], PipelineOptions] | None
    """What the engine arguments change in the model family's pipeline options (None: nothing).
    `--raw` is not here: it chooses the family's reference pipeline (`open_pipeline(raw=True)`)."""
    from dataclasses import replace

    from edge_ocr.errors import ConfigError

    budget, no_spaces = args.retry_budget, args.no_word_spaces
    profile = getattr(args, "print_profile", None)
    if args.raw and profile is not None:
        raise ConfigError("--print cannot be combined with --raw (the reference reads the crop only)")
    if args.raw and (budget is not None or no_spaces):
        raise ConfigError(
            "--raw reads with the reference pipeline: it takes no --retry-budget or --no-word-spaces"
        )
    if budget is None and not no_spaces and profile is None:
        return None

    def adjust(options):
        if budget is not None:
            options = replace(options, retry=replace(options.retry, budget=budget, enabled=budget > 0))
        if no_spaces:
            options = replace(options, spacing=replace(options.spacing, enabled=False))
        if profile is not None:
            options = replace(options, retry=options.retry.for_print(profile))
        return options

    return adjust


def open_from_args(args: argparse.Namespace):  # -> OcrPipeline
    """The pipeline the engine arguments ask for."""
    from edge_ocr.ocr.reader import open_pipeline

    return open_pipeline(
        args.engine,
        args.model_variant,
        models=args.models,
        models_dir=args.models_dir,
        threads=args.threads,
        raw=args.raw,
        adjust=options_adjust(args),
    )


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
