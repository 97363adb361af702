"""AWS Lambda entry point: `edge_ocr_sync.endpoint.lambda_handler.handler`.

API Gateway HTTP API (payload 2.0) events go through Mangum to the ASGI app; S3 object-created
events go straight to the core; the scheduled event (EventBridge, `{"action": "reprocess"}` from
the template's schedule, or a plain "Scheduled Event") reprocesses a bounded batch of stored
images whose result an older model made. Everything is built on the first call and reused while
the instance lives (no import-time side effects).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from edge_ocr_sync.endpoint.core import EndpointCore
from edge_ocr_sync.endpoint.reprocess import reprocess as reprocess_images

logger = logging.getLogger(__name__)

_core: EndpointCore | None = None
_http = None


def get_core() -> EndpointCore:
    global _core
    if _core is None:
        from dataclasses import replace

        from edge_ocr_sync.endpoint.core import build_core
        from edge_ocr_sync.endpoint.settings import EndpointSettings

        # no process of its own for large images: Lambda has no /dev/shm for a process pool's
        # locks, and it recycles the whole sandbox itself
        _core = build_core(replace(EndpointSettings.from_env(), ocr_isolate_mp=0))
        if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):  # on Lambda: each request as an EMF record
            from edge_ocr_sync.endpoint.metrics import emit_emf

            name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
            _core.on_request = lambda rec: emit_emf(rec, name)
    return _core


def reset() -> None:
    """Forget the cached core and app (tests; a new environment)."""
    global _core, _http
    _core = None
    _http = None


REPROCESS_MARGIN_MS = 15_000  # stop starting new images this long before the function's timeout


def handler(event: dict[str, Any], context: Any) -> Any:
    records = event.get("Records") if isinstance(event, dict) else None
    if records and all(r.get("eventSource") == "aws:s3" for r in records):
        return _timed("s3-event", lambda: {"results": get_core().on_s3_records(records)})
    if isinstance(event, dict) and (
        event.get("action") == "reprocess" or event.get("detail-type") == "Scheduled Event"
    ):
        return _timed("schedule", lambda: reprocess(event, context))
    global _http
    if _http is None:
        from mangum import Mangum

        from edge_ocr_sync.endpoint.app import create_app

        _http = Mangum(create_app(get_core()), lifespan="off")
    return _http(event, context)


def _timed(route: str, work) -> Any:
    """Run an event's work and record it like a request (500 if it raised: Lambda retries it)."""
    core = get_core()
    started = time.perf_counter()
    status = 500
    try:
        out = work()
        status = 200
        return out
    finally:
        core.record(route, status, time.perf_counter() - started)


def reprocess(event: dict[str, Any], context: Any) -> dict[str, Any]:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    try:
        max_images = max(1, min(1000, int(event.get("max_images", 50))))
    except (TypeError, ValueError):
        max_images = 50
    report = reprocess_images(
        get_core(),
        prefix=str(event.get("prefix") or "images/"),
        max_images=max_images,
        out_of_time=(lambda: remaining() < REPROCESS_MARGIN_MS) if remaining else None,
    )
    return report.to_dict()
