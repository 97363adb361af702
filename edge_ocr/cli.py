"""`edge-ocr` entry point: argument parsing, logging set-up and error-to-exit-code mapping.

Subcommands live in `edge_ocr.commands.*` (one module each, with `register(subparsers)`);
optional packages (models, gui, sync) contribute theirs through the `edge_ocr.commands`
entry-point group, so the core never imports them.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from edge_ocr import __version__
from edge_ocr.errors import EdgeOcrError
from edge_ocr.ops.logsetup import configure_logging

logger = logging.getLogger(__name__)

CORE_COMMANDS = (
    "edge_ocr.commands.ocr",
    "edge_ocr.commands.agent",
    "edge_ocr.commands.evaluate",
    "edge_ocr.commands.synth",
    "edge_ocr.commands.bench",
    "edge_ocr.commands.demo",
    "edge_ocr.commands.demo_store",
    "edge_ocr.commands.doctor",
    "edge_ocr.commands.service",
)


def _plugin_registrars() -> list:
    out = []
    for ep in sorted(entry_points(group="edge_ocr.commands"), key=lambda e: e.name):
        try:
            out.append(ep.load())
        except ImportError as exc:  # an optional package whose dependencies are not installed
            logger.debug("subcommands %s unavailable: %s", ep.name, exc)
        except AttributeError as exc:  # a broken plugin must not take the whole CLI down
            print(f"edge-ocr: note: '{ep.name}' commands unavailable: {exc}", file=sys.stderr)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-ocr",
        description="Offline OCR for labels and documents: PP-OCR on Paddle Lite, ONNX Runtime or Paddle Inference.",
    )
    parser.add_argument("--version", action="version", version=f"edge-ocr {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors in the log")
    parser.add_argument("--log-format", choices=("plain", "json"), default="plain", help="log line format")
    parser.add_argument("--log-file", default=None, help="also log to this file (rotated)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in CORE_COMMANDS:
        importlib.import_module(name).register(sub)
    for register in _plugin_registrars():
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = (
        logging.ERROR if args.quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    )
    configure_logging(level=level, fmt=args.log_format, log_file=args.log_file)
    try:
        return int(args.func(args) or 0)
    except EdgeOcrError as exc:
        print(f"edge-ocr: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("edge-ocr: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
