"""`edge-ocr ocr`: read images and print the output contract (shared/eval/README.md)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from tqdm import tqdm

from edge_ocr.commands.common import add_engine_args, expand_inputs, open_from_args
from edge_ocr.errors import EdgeOcrError, InputError
from edge_ocr.fields import FieldKind, extract_fields
from edge_ocr.ocr.imageio import read_pages
from edge_ocr.ocr.reader import cores
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
    add_fields_arg(p)
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="worker processes reading in parallel (default: one per core when there are several inputs; "
        "output keeps the input order)",
    )
    add_engine_args(p)
    add_print_arg(p)
    p.set_defaults(func=run)


PRINT_CHOICES = tuple(p.value for p in PrintProfile)
FIELD_KINDS = tuple(k.value for k in FieldKind)


def add_fields_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fields",
        choices=FIELD_KINDS,
        default=None,
        metavar="KIND",
        help="also read the document's fields: `receipt` (receipts and invoices: company, date, address, "
        "total; with --json in data.fields, each {text, value, confidence, boxes} or null, and "
        "data.fields_missing saying why)",
    )


def add_print_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--print",
        dest="print_profile",
        choices=PRINT_CHOICES,
        default=None,
        help="how the text is printed: dot-matrix, inkjet and low-contrast read every line from the matching "
        "pre-processed crop too, and order the low-confidence retries for that print (default: auto)",
    )


def _read_one(pipe, path: str, args: argparse.Namespace) -> tuple[list[str], bool]:
    """One input's output lines (JSON Lines or text) and whether it failed."""
    out: list[str] = []
    try:
        for page in read_pages(Path(path)):
            result = pipe.run(page.image, det=not args.no_det, cls=args.cls)
            fields = extract_fields(args.fields, result) if getattr(args, "fields", None) else None
            if args.json:
                obj = result.to_contract(path)
                if fields is not None:
                    obj["data"].update(fields.contract())
                    obj["timings_ms"]["fields"] = round(fields.elapsed_ms, 3)
                if page.count > 1:
                    obj["page"] = page.index + 1
                out.append(json.dumps(obj, ensure_ascii=False))
            else:
                suffix = f" (page {page.index + 1}/{page.count})" if page.count > 1 else ""
                out.append(
                    f"== {path}{suffix}: {len(result.lines)} lines, {result.timings_ms['total']:.0f} ms"
                )
                out.extend(f"{line.confidence:.3f}  {line.text}" for line in result.lines)
                if fields is not None:
                    for name, f in fields.items():
                        if f is None:
                            out.append(f"{name:>8}: - ({fields.missing.get(name)})")
                        else:
                            value = f"  ({f.value})" if f.value and f.value != f.text else ""
                            out.append(f"{name:>8}: {f.text}{value}  [{f.confidence:.2f}]")
    except InputError as exc:
        logger.warning("%s", exc)
        if args.json:
            return [json.dumps(error_contract(path, str(exc), pipe.engine_name), ensure_ascii=False)], True
        return [f"== {path}: error: {exc}"], True
    return out, False


# -- worker processes (one pipeline each, opened once) ------------------------------------------
_worker_pipe = None
_worker_args: argparse.Namespace | None = None


def _worker_start(args: argparse.Namespace, threads: int) -> None:
    global _worker_pipe, _worker_args
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the pool
    _worker_args = argparse.Namespace(**{**vars(args), "threads": threads})
    try:
        _worker_pipe = open_from_args(_worker_args)
    except EdgeOcrError as exc:  # raised again for the first input: an initializer must not fail
        _worker_pipe = exc


def _worker_read(path: str) -> tuple[list[str], bool]:
    if isinstance(_worker_pipe, EdgeOcrError):
        raise _worker_pipe
    assert _worker_pipe is not None and _worker_args is not None
    return _read_one(_worker_pipe, path, _worker_args)


def jobs_for(args: argparse.Namespace, n_inputs: int) -> int:
    """Worker processes: --jobs, else one per core when there is more than one input (a process
    per core reads faster than one process with a thread per core: det, rec and the CPU-side
    post-processing of one image overlap with another's)."""
    if args.jobs is not None:
        return max(1, min(args.jobs, n_inputs))
    return max(1, min(cores(), n_inputs)) if args.engine != "fake" else 1


def run(args: argparse.Namespace) -> int:
    inputs = [str(p) for p in expand_inputs(args.inputs)]
    jobs = jobs_for(args, len(inputs))
    failures = 0
    out = sys.stdout
    show = sys.stderr.isatty() and len(inputs) > 1
    with tqdm(total=len(inputs), desc="ocr", unit="file", disable=not show, leave=False) as progress:
        if jobs == 1:
            with open_from_args(args) as pipe:
                for path in inputs:
                    lines, failed = _read_one(pipe, path, args)
                    failures += failed
                    out.write("".join(line + "\n" for line in lines))
                    out.flush()
                    progress.update()
        else:
            import multiprocessing

            threads = args.threads or max(1, cores() // jobs)
            ctx = multiprocessing.get_context("spawn")  # no runtime state is shared with the parent
            with ctx.Pool(jobs, initializer=_worker_start, initargs=(args, threads)) as pool:
                for lines, failed in pool.imap(_worker_read, inputs, chunksize=1):
                    failures += failed
                    out.write("".join(line + "\n" for line in lines))
                    out.flush()
                    progress.update()
                # the workers end on their own; leaving the block early (an error, Ctrl-C) terminates
                # them. A worker SIGTERM'd by terminate() once printed a glog crash report (Paddle's
                # failure-signal handler) after a successful run.
                pool.close()
                pool.join()
    if failures and (args.strict or failures == len(inputs)):
        return InputError.exit_code
    return 0
