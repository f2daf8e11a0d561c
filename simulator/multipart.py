"""Just enough ``multipart/form-data`` parsing for ``POST /v1/files``.

Starlette's own form parser needs an extra package; uploads here are small and whole in
memory anyway (they are capped), so splitting on the boundary is enough.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message

__all__ = ["FormPart", "MultipartError", "parse_form"]


class MultipartError(ValueError):
    """A body that is not the multipart form it claims to be."""


@dataclass(frozen=True, slots=True)
class FormPart:
    """One field of a form; ``filename`` is set for file fields."""

    name: str
    filename: str | None
    content_type: str
    data: bytes


def _params(header: str, value: str) -> Message:
    msg = Message()
    msg[header] = value
    return msg


def boundary_of(content_type: str) -> bytes:
    """The boundary named by a ``Content-Type`` header; raises :class:`MultipartError`."""
    msg = _params("content-type", content_type)
    if msg.get_content_type() != "multipart/form-data":
        raise MultipartError("Content-Type must be multipart/form-data")
    boundary = msg.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise MultipartError("multipart Content-Type has no boundary")
    return boundary.encode("latin-1")


def parse_form(body: bytes, content_type: str) -> dict[str, FormPart]:
    """Every named part of a multipart form body, by field name."""
    delimiter = b"--" + boundary_of(content_type)
    chunks = body.split(delimiter)
    if len(chunks) < 3 or not chunks[-1].startswith(b"--"):
        raise MultipartError("multipart body is truncated or has no closing boundary")
    parts: dict[str, FormPart] = {}
    for chunk in chunks[1:-1]:
        if not chunk.startswith(b"\r\n") or not chunk.endswith(b"\r\n"):
            raise MultipartError("malformed multipart part")
        head, sep, data = chunk[2:-2].partition(b"\r\n\r\n")
        if not sep:
            raise MultipartError("multipart part has no header block")
        headers = Message()
        for line in head.decode("latin-1").split("\r\n"):
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip()] = value.strip()
        field = headers.get_param("name", header="content-disposition")
        if not isinstance(field, str):
            continue
        filename = headers.get_param("filename", header="content-disposition")
        parts[field] = FormPart(
            name=field,
            filename=filename if isinstance(filename, str) else None,
            content_type=headers.get_content_type()
            if "content-type" in headers
            else "application/octet-stream",
            data=data,
        )
    return parts
