"""The jobs page as an ASGI app, for ``relaydance web`` (mounted under its prefix).

The handlers read Redis synchronously, so each request runs in the thread pool and the
event loop stays free for webhooks; a clip streams from a file iterator.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from worker.web.bodies import MalformedLength, read_limited
from worker.web.jobs_page.app import JobsPage
from worker.web.jobs_page.http import MAX_FORM_BYTES, UiRequest, UiResponse, text_response

__all__ = ["asgi_app", "to_starlette"]


def to_starlette(result: UiResponse) -> Response:
    """A Starlette response with every header kept (``Set-Cookie`` may repeat)."""
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in result.headers]
    response: Response
    if isinstance(result.body, bytes):
        response = Response(result.body, status_code=result.status)
        if result.header("content-length") is None:
            raw.append((b"content-length", str(len(result.body)).encode()))
    else:
        response = StreamingResponse(iter(result.body), status_code=result.status)
    response.raw_headers = raw
    return response


def asgi_app(page: JobsPage, *, root: str) -> Starlette:
    """An app answering every path below the mount point ``root`` with ``page``."""

    async def endpoint(request: Request) -> Response:
        # The scheme as the server (and a trusted proxy, through uvicorn) set it: never
        # request.url, which parses the Host header and raises on a malformed one.
        https = request.scope.get("scheme") == "https"
        try:
            body = await read_limited(request, limit=MAX_FORM_BYTES) \
                if request.method == "POST" else b""  # fmt: skip
        except MalformedLength as exc:
            return to_starlette(text_response(f"malformed Content-Length header: {exc}\n", 400))
        ui = UiRequest(
            method=request.method,
            path="/" + str(request.path_params.get("path", "")),
            root=root,
            query=dict(request.query_params),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            client=request.client.host if request.client else None,
            https=https,
        )
        return to_starlette(await run_in_threadpool(page, ui))

    return Starlette(routes=[Route("/{path:path}", endpoint, methods=["GET", "HEAD", "POST"])])
