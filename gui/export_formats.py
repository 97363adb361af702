"""Exporting the review window's filtered selection. No Qt here, and no format of its own.

The rows come from the GUI's filter (`edge_ocr.store.review`); the files are written by
`edge_ocr.store.export`, exactly as `edge-ocr export` writes them (same CSV columns, the output
contract in JSON Lines, PPOCRLabel with `Label.txt`, line crops and `rec_gt.txt`). What the GUI
adds: progress, cancellation (the partial output is removed) and, as for training data from the
CLI, rejected results are left out of PPOCRLabel folders.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from edge_ocr.errors import EdgeOcrError
from edge_ocr.store import export
from edge_ocr.store.db import Connection
from edge_ocr.store.query import ResultRow, results_by_id
from edge_ocr.store.review import ResultFilter, count_results, iter_result_ids

FORMATS = {"csv": ("CSV", ".csv"), "jsonl": ("JSON Lines", ".jsonl"), "ppocrlabel": ("PPOCRLabel folder", "")}
CHUNK = 500


class ExportCancelled(EdgeOcrError):
    """The export was cancelled; the partial output was removed."""


def _selected(
    conn: Connection,
    flt: ResultFilter,
    total: int,
    progress: Callable[[int, int], None] | None,
    cancelled: Callable[[], bool],
) -> Iterator[ResultRow]:
    done = 0
    for ids in iter_result_ids(conn, flt, chunk=CHUNK):
        for row in results_by_id(conn, ids):
            if cancelled():
                raise ExportCancelled("export cancelled")
            yield row
            done += 1
            if progress is not None and done % 100 == 0:
                progress(done, total)


def export_selection(
    conn: Connection,
    flt: ResultFilter,
    fmt: str,
    target: Path,
    *,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] = lambda: False,
) -> int:
    """Write every result the filter selects; returns how many. Cancelling removes the output."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    total = count_results(conn, flt)
    target = Path(target)
    rows = _selected(conn, flt, total, progress, cancelled)
    try:
        if fmt == "ppocrlabel":
            kept = (r for r in rows if r.review_state != "rejected")
            written = export.write_ppocrlabel(conn, kept, target).images
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            writer = export.write_csv if fmt == "csv" else export.write_jsonl
            with target.open("w", encoding="utf-8", newline="" if fmt == "csv" else None) as out:
                written = writer(rows, out)
    except BaseException:
        if fmt == "ppocrlabel":
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)
        raise
    if progress is not None:
        progress(total, total)
    return written
