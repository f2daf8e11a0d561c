"""Reading a request body without letting a client decide how much memory it takes."""

from __future__ import annotations

from starlette.requests import Request

__all__ = ["read_limited"]


async def read_limited(request: Request, *, limit: int) -> bytes:
    """The request body, but never more than ``limit + 1`` bytes of it (one over the limit
    is how the caller knows to refuse it)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return b"\0" * (limit + 1)  # refused by size; not worth reading
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            break
    return b"".join(chunks)[: limit + 1]
