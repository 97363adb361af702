"""The GUI's command-line options, shared by `edge-ocr gui` (gui/cli.py) and `edge-ocr-gui` (gui/app.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

PAGE_CHOICES = ("review", "dashboard", "settings")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        type=Path,
        default=None,
        help="results database (default: $EDGE_OCR_DB, the config's, or the per-user one)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="agent config file to edit and to take recipes from (default: $EDGE_OCR_CONFIG)",
    )
    parser.add_argument(
        "--screenshot",
        type=Path,
        default=None,
        metavar="FILE.png",
        help="render the window once its first page is shown, save it as PNG and exit",
    )
    parser.add_argument(
        "--page", choices=PAGE_CHOICES, default="review", help="page to open (default: review)"
    )
