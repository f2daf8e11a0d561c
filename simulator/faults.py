"""Replies that go wrong on the wire: a connection dropped mid-reply, a body trickled slowly.

Both happen after the provider did the work, which is what makes them dangerous for a
client: the request reached the provider, the task exists and is billed, and the client
cannot tell. They are ASGI responses, so the same faults serve every dialect's routes.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

__all__ = ["DroppedReply", "GatewayPage", "TrickledReply", "quiet_dropped_replies"]

_GATEWAY_PAGE = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


class GatewayPage(Response):
    """A gateway's own 502 page in front of the provider: its reply was lost behind it, so
    nothing in it says whether the request was done (it was: the task exists)."""

    def __init__(self) -> None:
        super().__init__(_GATEWAY_PAGE, status_code=502, media_type="text/html")


class _Dropped(Exception):
    """Raised inside a response to make the server drop the connection (expected, quiet)."""


class DroppedReply(Response):
    """Starts a reply, sends part of it, then drops the connection."""

    def __init__(self) -> None:
        super().__init__(status_code=200, media_type="application/json")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"64")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"task_id": "', "more_body": True})
        # The server closes the connection when the application fails mid-response.
        raise _Dropped


class TrickledReply(Response):
    """Sends ``inner``'s body one byte at a time, spread over ``seconds``."""

    def __init__(self, inner: Response, *, seconds: float) -> None:
        super().__init__(status_code=inner.status_code)
        self.inner = inner
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = bytes(self.inner.body)
        headers = [(k, v) for k, v in self.inner.raw_headers if k.lower() != b"content-length"] + [
            (b"content-length", str(len(body)).encode())
        ]
        await send({"type": "http.response.start", "status": self.status_code, "headers": headers})
        pause = self.seconds / max(len(body), 1)
        for i in range(len(body)):
            await asyncio.sleep(pause)
            last = i == len(body) - 1
            await send(
                {"type": "http.response.body", "body": body[i : i + 1], "more_body": not last}
            )
        if not body:
            await send({"type": "http.response.body", "body": b""})


class _HideDropped(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, _Dropped)


def quiet_dropped_replies() -> None:
    """Keep the server's error log free of the tracebacks that dropped replies cause."""
    logging.getLogger("uvicorn.error").addFilter(_HideDropped())
