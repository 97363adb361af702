"""Export stored results: CSV, JSON Lines (the output contract) or PaddleOCR/PPOCRLabel training data.

PPOCRLabel layout (ready for PaddleOCR fine-tuning):
  OUT/images/<capture_id>_<name>.png    the page image
  OUT/Label.txt                         images/<file>\\t[{"transcription", "points", "difficult": false}]
  OUT/crop_img/<capture_id>_<n>.png     each line, perspective-cropped
  OUT/rec_gt.txt                        crop_img/<file>\\t<text>
Results whose fields were read (receipts) are written in PPOCRLabel's KIE form: each line's entry
also has `key_cls`, the field it belongs to (`company`, `date`, `address`, `total`) or `None`, and
OUT/class_list.txt names the classes (PaddleOCR's SER training reads it as `class_path`).
Text comes from reviewers' corrections when there are any. Rejected results are left out.

CSV rows carry the fields too: `company` and `address` as printed, `date` as an ISO date and
`total` as a decimal where they were normalised (else as printed), and `currency`.
"""

from __future__ import annotations

import csv
import enum
import json
import logging
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

from edge_ocr.errors import InputError
from edge_ocr.ocr.pipeline.det import crop_quad
from edge_ocr.store.query import ResultRow, line_corrections

logger = logging.getLogger(__name__)

CSV_COLUMNS = (
    "result_id",
    "capture_id",
    "created_at",
    "source",
    "image",
    "page",
    "station",
    "recipe",
    "engine",
    "model",
    "confidence",
    "verdict",
    "review_state",
    "text",
    "corrected_text",
    "company",
    "date",
    "address",
    "total",
    "currency",
)
KIE_CLASSES = ("company", "date", "address", "total", "None")


class ExportFormat(str, enum.Enum):
    CSV = "csv"
    JSONL = "jsonl"
    PPOCRLABEL = "ppocrlabel"


@dataclass(frozen=True)
class ExportReport:
    results: int
    images: int = 0
    crops: int = 0
    skipped: int = 0


def write_csv(rows: Iterable[ResultRow], out: TextIO) -> int:
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    n = 0
    for r in rows:
        writer.writerow(
            (
                r.result_id,
                r.capture_id,
                r.created_at,
                r.source,
                r.image,
                r.page,
                r.station or "",
                r.recipe or "",
                r.engine,
                r.model,
                f"{r.confidence:.4f}",
                r.verdict or "",
                r.review_state,
                r.text,
                r.corrected_text if r.corrected_text is not None else "",
                *_field_columns(r),
            )
        )
        n += 1
    return n


def _field_columns(r: ResultRow) -> tuple[str, str, str, str, str]:
    if r.fields is None:
        return ("", "", "", "", "")
    out = []
    for name in ("company", "date", "address", "total"):
        f = r.fields.get(name)
        out.append("" if f is None else (f.value if name in ("date", "total") and f.value else f.text))
    total = r.fields.total
    return (*out, (total.currency or "") if total is not None else "")  # type: ignore[return-value]


def _key_classes(row: ResultRow) -> list[str]:
    """Each line's field (PPOCRLabel's `key_cls`): the field whose boxes include the line's box."""
    classes = ["None"] * len(row.lines)
    if row.fields is None:
        return classes
    for name, f in row.fields.items():
        if f is None:
            continue
        wanted = {_box_key(b) for b in f.boxes}
        for i, line in enumerate(row.lines):
            if _box_key(line["box"]) in wanted:
                classes[i] = name
    return classes


def _box_key(box) -> tuple:
    return tuple((round(float(x)), round(float(y))) for x, y in box)


def write_jsonl(rows: Iterable[ResultRow], out: TextIO) -> int:
    n = 0
    for r in rows:
        out.write(json.dumps(r.to_contract(), ensure_ascii=False) + "\n")
        n += 1
    return n


def final_texts(conn: sqlite3.Connection, row: ResultRow) -> list[str]:
    """Each line's text after reviewers' corrections."""
    texts = [str(line["text"]) for line in row.lines]
    fixes = line_corrections(conn, row.result_id)
    if fixes:
        for idx, after in fixes.items():
            if 0 <= idx < len(texts):
                texts[idx] = after
    elif row.corrected_text is not None:
        corrected = row.corrected_text.split("\n")
        if len(corrected) == len(texts):
            texts = corrected
    return texts


def _page_image(row: ResultRow) -> np.ndarray | None:
    from edge_ocr.ocr.imageio import read_pages

    for candidate in row.image_files():
        if not candidate.exists():
            continue
        try:
            for page in read_pages(candidate):
                if page.index + 1 == row.page:
                    return page.image
        except InputError as exc:
            logger.warning("result %d: %s", row.result_id, exc)
    return None


def write_ppocrlabel(conn: sqlite3.Connection, rows: Iterable[ResultRow], out_dir: Path) -> ExportReport:
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "crop_img").mkdir(parents=True, exist_ok=True)
    n = images = crops = skipped = 0
    kie = False
    with (
        (out_dir / "Label.txt").open("w", encoding="utf-8") as label_fh,
        (out_dir / "rec_gt.txt").open("w", encoding="utf-8") as rec_fh,
    ):
        for row in rows:
            n += 1
            image = _page_image(row)
            if image is None:
                skipped += 1
                logger.warning("result %d: image %s is gone; skipped", row.result_id, row.image)
                continue
            stem = Path(row.image).stem or "image"
            name = f"{row.capture_id}_{stem}" + (f"_p{row.page}" if row.page > 1 else "") + ".png"
            cv2.imwrite(str(out_dir / "images" / name), image)
            images += 1
            texts = final_texts(conn, row)
            classes = _key_classes(row)
            entries = []
            for i, (line, text) in enumerate(zip(row.lines, texts)):
                points = [[round(float(x)), round(float(y))] for x, y in line["box"]]
                entry: dict = {"transcription": text, "points": points, "difficult": False}
                if row.fields is not None:
                    entry["key_cls"] = classes[i]
                    kie = True
                entries.append(entry)
                if not text.strip():
                    continue
                crop_name = f"{row.capture_id}_{stem}_{i:03d}.png"
                cv2.imwrite(str(out_dir / "crop_img" / crop_name), crop_quad(image, line["box"]))
                rec_fh.write(f"crop_img/{crop_name}\t{text}\n")
                crops += 1
            label_fh.write(f"images/{name}\t{json.dumps(entries, ensure_ascii=False)}\n")
    if kie:
        (out_dir / "class_list.txt").write_text("".join(c + "\n" for c in KIE_CLASSES), encoding="utf-8")
    return ExportReport(results=n, images=images, crops=crops, skipped=skipped)
