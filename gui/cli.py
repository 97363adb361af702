"""`edge-ocr gui`: contributed to the core CLI through the `edge_ocr.commands` entry point."""

from __future__ import annotations

import argparse

from edge_ocr.errors import ConfigError
from edge_ocr_gui.options import add_arguments


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
    try:
        import PySide6  # noqa: F401
    except ImportError as exc:
        raise ConfigError("the GUI needs the gui extra: pip install 'edge-ocr[gui]'") from exc
    from edge_ocr_gui.app import run as run_gui

    return run_gui(args.db, config_path=args.config, screenshot=args.screenshot, page=args.page)
