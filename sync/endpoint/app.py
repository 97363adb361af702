"""The thin ASGI app over `EndpointCore` (Starlette's request and response, no router: every
path, however odd, reaches the core and gets its JSON answer): served by uvicorn locally, by
Mangum on Lambda."""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from edge_ocr_sync.endpoint.core import EndpointCore, error_reply

logger = logging.getLogger(__name__)


def create_app(core: EndpointCore):
    async def dispatch(request: Request) -> Response:
        limit = core.body_limit(request.method, request.url.path)
        declared = request.headers.get("content-length")
        too_big = error_reply(413, f"request body is over the {limit} byte limit; use POST /v1/uploads")
        if declared and declared.isdigit() and int(declared) > limit:
            reply = too_big
        else:
            chunks: list[bytes] = []
            size = 0
            try:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        break
                    chunks.append(chunk)
            except ClientDisconnect:
                return Response(status_code=400)
            if size > limit:
                reply = too_big
            else:
                headers = {k.lower(): v for k, v in request.headers.items()}
                reply = await run_in_threadpool(
                    core.handle,
                    request.method,
                    request.url.path,
                    headers,
                    b"".join(chunks),
                    request.url.query,
                )
        return Response(reply.json_bytes(), reply.status, reply.headers, media_type="application/json")

    async def app(scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        try:
            response = await dispatch(Request(scope, receive))
        except Exception:
            logger.exception("%s %s failed", scope.get("method"), scope.get("path"))
            reply = error_reply(500, "internal error; the endpoint's log has the details")
            response = Response(reply.json_bytes(), 500, media_type="application/json")
        await response(scope, receive, send)

    return app
