"""Reading a request body without letting a client decide how much memory it takes."""

from __future__ import annotations

import re

from starlette.requests import Request

__all__ = ["MalformedLength", "declared_length", "read_limited"]

# ASCII digits only (str.isdigit() also takes "²", which int() refuses), and few enough
# that int() never meets Python's limit on long digit strings.
_LENGTH = re.compile(r"[0-9]{1,18}")


class MalformedLength(ValueError):
    """A ``Content-Length`` header that is not a plain decimal number (answered 400)."""


def declared_length(value: str | None) -> int | None:
    """A ``Content-Length`` header's value; None when absent. Raises
    :class:`MalformedLength` for anything but digits; a number of more than 18 digits is
    read as larger than any limit."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if _LENGTH.fullmatch(text):
        return int(text)
    if text.isascii() and text.isdigit():
        return 10**18  # a well-formed but absurd length: over every limit
    raise MalformedLength("Content-Length must be a decimal number of bytes")


async def read_limited(request: Request, *, limit: int) -> bytes:
    """The request body, but never more than ``limit + 1`` bytes of it (one over the limit
    is how the caller knows to refuse it). Raises :class:`MalformedLength`."""
    declared = declared_length(request.headers.get("content-length"))
    if declared is not None and declared > limit:
        return b"\0" * (limit + 1)  # refused by size; not worth reading
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            break
    return b"".join(chunks)[: limit + 1]
