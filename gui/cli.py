"""`edge-ocr gui`: contributed to the core CLI through the `edge_ocr.commands` entry point."""

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


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gui",
        help="review results, correct them and watch the line (desktop GUI)",
        description="Open the desktop GUI over a results store: review and correct results, dashboard, settings, export. "
        "Needs PySide6 (pip install 'edge-ocr[gui]').",
    )
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gui.app import run as run_gui

    return run_gui(args.db, config_path=args.config, screenshot=args.screenshot, page=args.page)
