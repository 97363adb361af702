"""Options shared by the subcommands that run OCR."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_ocr.engines.registry import ENGINE_CHOICES
from edge_ocr.imageio import IMAGE_SUFFIXES

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
