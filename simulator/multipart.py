"""``multipart/form-data`` for ``POST /v1/files``, read by python-multipart.

python-multipart is the parser Starlette's own forms use; it is called directly here so
that the upload cap is applied to the body as read, and parts stay in memory (uploads
are capped and small) rather than in spooled temporary files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import Message
from typing import TYPE_CHECKING

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

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


def boundary_of(content_type: str) -> bytes:
    """The boundary named by a ``Content-Type`` header; raises :class:`MultipartError`."""
    kind, params = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        raise MultipartError("Content-Type must be multipart/form-data")
    boundary = params.get(b"boundary")
    if not boundary:
        raise MultipartError("multipart Content-Type has no boundary")
    return boundary


@dataclass
class _Collector:
    """The parser's callbacks: each part's headers and bytes, and whether the body ended."""

    parts: dict[str, FormPart] = field(default_factory=dict)
    ended: bool = False
    _headers: list[tuple[str, str]] = field(default_factory=list)
    _name: bytearray = field(default_factory=bytearray)
    _value: bytearray = field(default_factory=bytearray)
    _data: bytearray = field(default_factory=bytearray)

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda data, start, end: self._name.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_part_data": lambda data, start, end: self._data.extend(data[start:end]),
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _begin(self) -> None:
        self._headers, self._data = [], bytearray()

    def _header_end(self) -> None:
        self._headers.append((self._name.decode("latin-1"), self._value.decode("latin-1")))
        self._name, self._value = bytearray(), bytearray()

    def _part_end(self) -> None:
        headers = Message()
        for name, value in self._headers:
            headers[name] = value
        field_name = headers.get_param("name", header="content-disposition")
        if not isinstance(field_name, str):
            return
        filename = headers.get_param("filename", header="content-disposition")
        self.parts[field_name] = FormPart(
            name=field_name,
            filename=filename if isinstance(filename, str) else None,
            content_type=headers.get_content_type()
            if "content-type" in headers
            else "application/octet-stream",
            data=bytes(self._data),
        )

    def _end(self) -> None:
        self.ended = True


def parse_form(body: bytes, content_type: str) -> dict[str, FormPart]:
    """Every named part of a multipart form body, by field name."""
    collector = _Collector()
    parser = MultipartParser(boundary_of(content_type), collector.callbacks())
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as exc:
        raise MultipartError(f"malformed multipart body: {exc}") from None
    if not collector.ended:
        raise MultipartError("multipart body is truncated or has no closing boundary")
    return collector.parts
