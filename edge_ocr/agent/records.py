"""Turning a worker's pages into what the store keeps and the outputs send: capture info,
verdicts, camera records (with the frame kept as the record's image)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import cv2

from edge_ocr.agent.outputs import Outputs
from edge_ocr.agent.sources.camera import CameraCapture
from edge_ocr.agent.sources.folder import FileCandidate
from edge_ocr.agent.workers import JobDone
from edge_ocr.config import AfterSuccess, FolderSourceConfig, RecipeConfig
from edge_ocr.fields import ReceiptFields, ReceiptOptions, extract_fields
from edge_ocr.ops import metrics
from edge_ocr.rules.verdict import Verdict, evaluate
from edge_ocr.store.db import Connection
from edge_ocr.store.files import display_path
from edge_ocr.store.results import CaptureInfo, PageOutcome, StoredResult, VerdictInfo, store_capture
from edge_ocr.types import OcrResult

logger = logging.getLogger(__name__)


@dataclass
class AgentStats:
    files_done: int = 0
    files_duplicate: int = 0
    files_failed: int = 0
    files_quarantined: int = 0
    files_incomplete: int = 0  # handed back to the folder source: changed or still being written
    camera_records: int = 0
    worker_restarts: int = 0
    latencies_s: list[float] = field(default_factory=list)  # first event -> commit
    latencies_renamed_s: list[float] = field(default_factory=list)  # files renamed into the folder
    latencies_written_s: list[float] = field(default_factory=list)  # files written in place


def verdict_info(verdict: Verdict) -> VerdictInfo:
    return VerdictInfo(verdict.status.value, verdict.reasons, verdict.fields_dict(), verdict.recipe)


def recipe_fields(recipe: RecipeConfig | None, result: OcrResult) -> ReceiptFields | None:
    """The page's fields when its recipe asks for them (`extract`)."""
    if recipe is None or recipe.extract is None:
        return None
    return extract_fields(recipe.extract, result, ReceiptOptions(date_order=recipe.date_order))


def checked(recipe: RecipeConfig | None, result: OcrResult) -> tuple[Verdict | None, ReceiptFields | None]:
    """The page's fields (when asked for) and its verdict (when it has a recipe)."""
    fields = recipe_fields(recipe, result)
    verdict = evaluate(recipe, result, fields=dict(fields.items()) if fields else None) if recipe else None
    return verdict, fields


def page_outcomes(
    folder: FolderSourceConfig, cand: FileCandidate, msg: JobDone, recipe: RecipeConfig | None
) -> list[PageOutcome]:
    """One PageOutcome per page of a file, with its verdict when the folder has a recipe."""
    shown = display_path(cand.path)
    raw = os.fsencode(cand.path)
    kept = folder.after is not AfterSuccess.DELETE
    pages = []
    for page in msg.pages:
        cap = CaptureInfo(
            source=folder.source_name,
            source_path=shown,
            page=page.index + 1,
            sha256=cand.sha256,
            size=cand.size,
            width=page.result.image_size[0],
            height=page.result.image_size[1],
            stored_image=shown if kept else None,
            station=folder.station,
            recipe=recipe.name if recipe is not None else folder.recipe,
            source_path_raw=raw,
            stored_image_raw=raw if kept else None,
        )
        verdict, fields = checked(recipe, page.result)
        pages.append(PageOutcome(cap, page.result, verdict_info(verdict) if verdict else None, fields))
    return pages


def store_camera_record(
    conn: Connection,
    cap: CameraCapture,
    msg: JobDone,
    *,
    captures_dir: Path,
    recipe: RecipeConfig | None,
    versions: dict[str, str],
) -> tuple[StoredResult, PageOutcome, Path]:
    """Keep the record's best frame under `captures_dir` and store its result."""
    cam = cap.camera
    page = msg.pages[0]
    best = page.best_frame or 0
    image = cap.frames[best]
    out_dir = captures_dir / cam.name / cap.captured_at[:10]
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = cap.captured_at.replace(":", "").replace("-", "").replace(".", "")
    path = out_dir / f"{stamp}_{msg.job_id}.jpg"
    if not cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 92]):
        logger.error("cannot write %s", path)
    verdict, fields = checked(recipe, page.result)
    info = CaptureInfo(
        source=cam.source_name,
        source_path=str(path),
        width=int(image.shape[1]),
        height=int(image.shape[0]),
        stored_image=str(path),
        station=cam.station,
        recipe=recipe.name if recipe is not None else cam.recipe,
        source_path_raw=os.fsencode(path),
        stored_image_raw=os.fsencode(path),
    )
    outcome = PageOutcome(info, page.result, verdict_info(verdict) if verdict else None, fields)
    return store_capture(conn, outcome, model_versions=versions), outcome, path


def emit_verdicts(
    outputs: Outputs | None, stored: list[StoredResult], pages: list[PageOutcome], image: str
) -> None:
    """Count the stored results and send each verdict to the configured outputs."""
    metrics.record_outcomes(pages)
    if outputs is None or not outputs.sinks:
        return
    for s, p in zip(stored, pages):
        if p.verdict is None or s.verdict_id is None:
            continue
        outputs.emit(
            {
                "verdict_id": s.verdict_id,
                "result_id": s.result_id,
                "capture_id": s.capture_id,
                "image": image,
                "page": p.capture.page,
                "station": p.capture.station,
                "recipe": p.verdict.recipe,
                "verdict": p.verdict.status,
                "reasons": list(p.verdict.reasons),
                "fields": p.verdict.fields,
                **({"receipt": p.fields.to_dict()} if p.fields is not None else {}),
                "text": p.result.text,
                "at": datetime.now().astimezone().isoformat(timespec="milliseconds"),
            }
        )
