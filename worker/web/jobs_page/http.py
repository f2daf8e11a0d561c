"""The jobs page's own request and response: plain data, so Starlette, Flask and Django
adapters all drive the same handlers (as :func:`worker.web.receiver.handle_webhook` does)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

__all__ = [
    "MAX_FORM_BYTES",
    "UiRequest",
    "UiResponse",
    "html_response",
    "redirect",
    "text_response",
]

MAX_FORM_BYTES = 16 * 1024  # the forms post a token and a confirmation, nothing more

# No script, style or media from anywhere else; nothing may frame the page; links leave
# no referrer outside the site (with "no-referrer" a browser posts "Origin: null").
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:{media}; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "media-src 'self'{media}"
)


@dataclass(frozen=True)
class UiRequest:
    """One request, as the adapter saw it."""

    method: str
    path: str  # below the mount point, starting with "/"
    root: str  # the mount point as the browser sees it ("/ui"), for links
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""
    client: str | None = None  # the peer's address
    https: bool = False  # the browser reached us over TLS (cookies then say Secure)

    def header(self, name: str) -> str:
        """A header's value, or ``""``."""
        return self.headers.get(name.lower(), "")

    def form(self) -> dict[str, str]:
        """The url-encoded form of a POST (the pages post no other kind)."""
        if "application/x-www-form-urlencoded" not in self.header("content-type"):
            return {}
        text = self.body[:MAX_FORM_BYTES].decode("utf-8", "replace")
        return dict(parse_qsl(text, keep_blank_values=True))

    def cookie(self, name: str) -> str:
        """A cookie's value, or ``""``."""
        for part in self.header("cookie").split(";"):
            key, _, value = part.strip().partition("=")
            if key == name:
                return value
        return ""


@dataclass
class UiResponse:
    """Status, headers and a body: bytes, or chunks of a file being streamed."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | Iterable[bytes] = b""

    def header(self, name: str) -> str | None:
        """The first value of a header, if set."""
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


def security_headers(*, media_origin: str = "") -> list[tuple[str, str]]:
    """Headers every answer carries: no caching, no framing, no sniffing, a strict CSP."""
    return [
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "same-origin"),
        ("Content-Security-Policy", _CSP.format(media=f" {media_origin}" if media_origin else "")),
    ]


def html_response(
    body: str, status: int = 200, *, media_origin: str = "", extra: Iterable[tuple[str, str]] = ()
) -> UiResponse:
    """An HTML page or fragment."""
    headers = [("Content-Type", "text/html; charset=utf-8"), *security_headers(
        media_origin=media_origin), *extra]  # fmt: skip
    return UiResponse(status, headers, body.encode())


def text_response(
    body: str, status: int = 200, *, content_type: str = "text/plain; charset=utf-8",
    extra: Iterable[tuple[str, str]] = (),
) -> UiResponse:  # fmt: skip
    """Plain text (an error, a CSV report)."""
    return UiResponse(
        status, [("Content-Type", content_type), *security_headers(), *extra], body.encode()
    )


def redirect(location: str, *, extra: Iterable[tuple[str, str]] = ()) -> UiResponse:
    """A 303 See Other: after a POST, the browser GETs the page again."""
    return UiResponse(303, [("Location", location), *security_headers(), *extra])
