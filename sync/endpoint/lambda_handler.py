"""AWS Lambda entry point: `sync.endpoint.lambda_handler.handler`.

API Gateway HTTP API (payload 2.0) events go through Mangum to the Starlette app; S3
object-created events go straight to the core. Everything is built on the first call and
reused while the instance lives (no import-time side effects).
"""

from __future__ import annotations

import logging
from typing import Any

from sync.endpoint.core import EndpointCore

logger = logging.getLogger(__name__)

_core: EndpointCore | None = None
_http = None


def get_core() -> EndpointCore:
    global _core
    if _core is None:
        from sync.endpoint.core import build_core

        _core = build_core()
    return _core


def reset() -> None:
    """Forget the cached core and app (tests; a new environment)."""
    global _core, _http
    _core = None
    _http = None


def handler(event: dict[str, Any], context: Any) -> Any:
    records = event.get("Records") if isinstance(event, dict) else None
    if records and all(r.get("eventSource") == "aws:s3" for r in records):
        return {"results": get_core().on_s3_records(records)}
    global _http
    if _http is None:
        from mangum import Mangum

        from sync.endpoint.app import create_app

        _http = Mangum(create_app(get_core()), lifespan="off")
    return _http(event, context)
