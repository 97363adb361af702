"""Scheduled reprocessing: read stored images again with the active model set, resumably and
idempotently, keeping the position in the index."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edge_ocr_sync.endpoint.layout import IMAGE_PREFIX, IMAGE_TYPES, RESULT_SUFFIX
from edge_ocr_sync.endpoint.storage import MissingObject

if TYPE_CHECKING:
    from edge_ocr_sync.endpoint.core import EndpointCore

logger = logging.getLogger(__name__)


@dataclass
class ReprocessReport:
    model: str
    prefix: str
    resumed_from: str = ""
    scanned: int = 0
    reprocessed: int = 0
    up_to_date: int = 0
    skipped_older: int = 0
    failed: int = 0
    done: bool = False
    cursor: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def reprocess(
    core: EndpointCore,
    *,
    prefix: str = IMAGE_PREFIX,
    since: float | None = None,
    max_images: int = 50,
    max_scanned: int = 2000,
    out_of_time: Callable[[], bool] | None = None,
) -> ReprocessReport:
    """Read again, with the active model set, stored images under `prefix` (modified at or
    after `since`) whose result was made by another model set or that have none; at most
    `max_images` reads and `max_scanned` images looked at per call. Resumable: the position is
    kept in the index (per model set, prefix and since), so the next call goes on from there,
    and a finished pass starts over (picking up images stored since). Idempotent: an image
    whose result has the active model set is left alone."""
    if not prefix.startswith(IMAGE_PREFIX):
        raise ValueError(f"reprocess reads images: the prefix must start with {IMAGE_PREFIX}")
    model = core.ocr.model_set_id()
    pk = f"reprocess#{model}#{prefix}#{int(since or 0)}"
    state = core.storage.get_item(pk) or {}
    report = ReprocessReport(model=model, prefix=prefix, resumed_from=state.get("cursor") or "")
    cursor = report.resumed_from
    done = True
    for key, modified in core.storage.list_objects(prefix, start_after=cursor):
        if key.endswith(RESULT_SUFFIX) or "." + key.rsplit(".", 1)[-1] not in IMAGE_TYPES.values():
            continue
        if (
            report.reprocessed >= max_images
            or report.scanned >= max_scanned
            or (out_of_time and out_of_time())
        ):
            done = False
            break
        cursor = key
        if since is not None and modified < since:
            report.skipped_older += 1
            continue
        report.scanned += 1
        if _result_model(core, key) == model:
            report.up_to_date += 1
            continue
        try:
            data = core.storage.get_object(key, core.settings.max_upload_bytes)
        except (MissingObject, ValueError) as exc:
            logger.warning("reprocess: cannot read %s: %s", key, exc)
            report.failed += 1
            continue
        status = core.on_object_created(key, data)
        report.reprocessed += 1
        if status != "success":
            report.failed += 1
        core.storage.put_item({"pk": pk, "cursor": cursor, "updated_at": int(core.clock())})
    report.done = done
    report.cursor = "" if done else cursor
    core.storage.put_item(
        {
            "pk": pk,
            "cursor": report.cursor,
            "updated_at": int(core.clock()),
            "passes_done": int(state.get("passes_done", 0)) + int(done),
        }
    )
    logger.info("reprocess %s with %s: %s", prefix, model, report.to_dict())
    return report


def _result_model(core: EndpointCore, key: str) -> str | None:
    try:
        doc = json.loads(core.storage.get_object(key + RESULT_SUFFIX, 64 * 1024 * 1024))
    except (MissingObject, ValueError):
        return None
    return doc.get("model") if isinstance(doc, dict) else None
