"""`edge-ocr ocr`: read images and print the output contract (shared/eval/README.md)."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from edge_ocr.commands.common import add_engine_args, expand_inputs, open_from_args
from edge_ocr.commands.progress import Progress
from edge_ocr.errors import InputError
from edge_ocr.ocr.imageio import read_pages
from edge_ocr.types import PrintProfile, error_contract

logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ocr",
        help="read text from images, folders or PDFs",
        description="Read text from images (PNG, JPEG, TIFF, BMP, WebP, GIF) and PDFs. "
        "Folders are searched recursively. With --json, prints one JSON object per image (per page for "
        "multi-page files).",
    )
    p.add_argument("inputs", nargs="+", metavar="IMAGE|DIR", help="image files or folders")
    p.add_argument("--json", action="store_true", help="JSON Lines output (the output contract)")
    p.add_argument("--no-det", action="store_true", help="treat each whole image as one text line")
    p.add_argument(
        "--cls",
        action="store_true",
        default=None,
        help="classify line orientation, 0/180 degrees (default: as the pipeline does; --raw on PP-OCRv6 does, as RapidOCR)",
    )
    p.add_argument("--strict", action="store_true", help="exit with status 5 if any image could not be read")
    add_engine_args(p)
    add_print_arg(p)
    p.set_defaults(func=run)


PRINT_CHOICES = tuple(p.value for p in PrintProfile)


def add_print_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--print",
        dest="print_profile",
        choices=PRINT_CHOICES,
        default=None,
        help="how the text is printed: dot-matrix, inkjet and low-contrast read every line from the matching "
        "pre-processed crop too, and order the low-confidence retries for that print (default: auto)",
    )


def run(args: argparse.Namespace) -> int:
    files = expand_inputs(args.inputs)
    pipe = open_from_args(args)
    failures = 0
    out = sys.stdout
    with pipe, Progress(len(files), "ocr", enabled=sys.stderr.isatty() and len(files) > 1) as progress:
        for path in files:
            shown = str(path)
            try:
                for page in read_pages(path):
                    result = pipe.run(page.image, det=not args.no_det, cls=args.cls)
                    if args.json:
                        obj = result.to_contract(shown)
                        if page.count > 1:
                            obj["page"] = page.index + 1
                        out.write(json.dumps(obj, ensure_ascii=False) + "\n")
                    else:
                        suffix = f" (page {page.index + 1}/{page.count})" if page.count > 1 else ""
                        out.write(
                            f"== {shown}{suffix}: {len(result.lines)} lines, {result.timings_ms['total']:.0f} ms\n"
                        )
                        for line in result.lines:
                            out.write(f"{line.confidence:.3f}  {line.text}\n")
            except InputError as exc:
                failures += 1
                logger.warning("%s", exc)
                if args.json:
                    out.write(
                        json.dumps(error_contract(shown, str(exc), pipe.engine_name), ensure_ascii=False)
                        + "\n"
                    )
                else:
                    out.write(f"== {shown}: error: {exc}\n")
            out.flush()
            progress.advance()
    if failures and (args.strict or failures == len(files)):
        return InputError.exit_code
    return 0
