"""The thin Starlette app over `EndpointCore`: served by uvicorn locally, by Mangum on Lambda."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from sync.endpoint.core import EndpointCore, error_reply


def create_app(core: EndpointCore) -> Starlette:
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

    methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
    return Starlette(routes=[Route("/{path:path}", dispatch, methods=methods)])
