"""Writing a filtered selection as CSV, JSON Lines or PPOCRLabel training data. No Qt here.

Corrected text wins over the reading everywhere: these files feed audits and retraining.
PPOCRLabel: a folder with `images/<result id><suffix>` and `Label.txt` (one line per image:
`images/<name>\\t[{"transcription", "points", "difficult"}]`), the layout PPOCRLabel opens.
"""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

from edge_ocr.errors import EdgeOcrError
from edge_ocr.store.review import ResultFilter, count_results, iter_results, load_result

FORMATS = {"csv": ("CSV", ".csv"), "jsonl": ("JSON Lines", ".jsonl"), "ppocrlabel": ("PPOCRLabel folder", "")}
CSV_COLUMNS = (
    "id", "created_at", "source", "source_path", "recipe", "text", "corrected_text", "confidence", "verdict",
    "review_state", "reviewed_by", "reviewed_at",
)  # fmt: skip


class ExportCancelled(EdgeOcrError):
    """The export was cancelled; the partial output was removed."""


def export_selection(
    conn: sqlite3.Connection,
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
    written = 0
    if fmt == "ppocrlabel":
        (target / "images").mkdir(parents=True, exist_ok=True)
        out = (target / "Label.txt").open("w", encoding="utf-8")
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        out = target.open("w", encoding="utf-8", newline="")
    try:
        writer = csv.writer(out) if fmt == "csv" else None
        if writer is not None:
            writer.writerow(CSV_COLUMNS)
        for row in iter_results(conn, flt):
            if cancelled():
                raise ExportCancelled("export cancelled")
            d = load_result(conn, row.id)
            if writer is not None:
                writer.writerow(
                    (d.id, d.created_at, d.source, d.source_path or "", d.recipe or "", d.text, d.corrected_text or "",
                     f"{d.confidence:.4f}", d.verdict or "", d.review_state, d.reviewed_by or "", d.reviewed_at or "")
                )  # fmt: skip
            elif fmt == "jsonl":
                obj = {
                    "id": d.id, "created_at": d.created_at, "source": d.source, "source_path": d.source_path,
                    "image": d.image_path, "recipe": d.recipe, "engine": d.engine, "model": d.model,
                    "text": d.text, "corrected_text": d.corrected_text, "confidence": d.confidence,
                    "verdict": d.verdict, "verdict_reasons": list(d.verdict_reasons),
                    "review_state": d.review_state, "reviewed_by": d.reviewed_by, "reviewed_at": d.reviewed_at,
                    "lines": [line.to_dict() for line in d.lines],
                    "corrections": [c.__dict__ for c in d.corrections],
                }  # fmt: skip
                out.write(json.dumps(obj, ensure_ascii=False) + "\n")
            else:
                if not d.image_path or not Path(d.image_path).is_file():
                    continue  # nothing to train on without the image
                name = f"{d.id}{Path(d.image_path).suffix or '.png'}"
                shutil.copyfile(d.image_path, target / "images" / name)
                labels = [
                    {
                        "transcription": line.text,
                        "points": [[round(x), round(y)] for x, y in line.box],
                        "difficult": False,
                    }
                    for line in d.lines
                ]
                out.write(f"images/{name}\t{json.dumps(labels, ensure_ascii=False)}\n")
            written += 1
            if progress is not None and written % 100 == 0:
                progress(written, total)
    except BaseException:
        out.close()
        if fmt == "ppocrlabel":
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)
        raise
    out.close()
    if progress is not None:
        progress(written, total)
    return written
