"""The HTTP client a clip is downloaded with, and how its failures are told.

The clip URL is signed: the client sends no credentials, reads no proxy settings, follows
no redirect by itself and connects only to addresses the SSRF rules checked for the hop;
a failure becomes our error with every signed part of the URL taken out of its text.
"""

from __future__ import annotations

import contextlib

import httpx

from worker.errors import TransportFailure, UnsafeUrl
from worker.provider.transport import make_transport
from worker.provider.urlsafety import redact_url

__all__ = ["dirty", "hop_timeout", "make_download_client", "translated"]


def make_download_client(*, connect_timeout: float, read_timeout: float) -> httpx.Client:
    """An httpx client for downloads: no auto redirects, no env proxies, no credentials.

    Its transport connects only to addresses the SSRF rules allow, and only to the ones
    :func:`~worker.provider.urlsafety.check_url` checked for the hop (no DNS rebinding).
    """
    limits = httpx.Limits(max_connections=20, max_keepalive_connections=10, keepalive_expiry=30)
    return httpx.Client(
        timeout=httpx.Timeout(
            connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout
        ),
        transport=make_transport(limits=limits, guard_addresses=True),
        follow_redirects=False,
        trust_env=False,
        # mp4 does not compress; identity keeps the byte cap about bytes on the wire.
        headers={"Accept-Encoding": "identity", "User-Agent": "relaydance-worker"},
    )


def _failed_url(exc: Exception, url: str) -> str:
    """The url of the hop that failed: a redirect target, or the original."""
    try:
        return str(exc.request.url) if isinstance(exc, httpx.RequestError) else url
    except RuntimeError:  # httpx raises this when the error carries no request
        return url


def _scrub(exc: Exception, urls: list[str]) -> tuple[str, bool]:
    """``exc`` as text with every signed part of ``urls`` removed; True when it had one."""
    text = str(exc) or type(exc).__name__
    secrets: list[str] = []
    for url in urls:
        with contextlib.suppress(httpx.InvalidURL):
            parts = httpx.URL(url)
            secrets += [url, parts.query.decode("ascii", "replace"), parts.fragment]
    secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
    dirty = any(s in text for s in secrets)
    for secret in secrets:
        text = text.replace(secret, "<redacted>")
    return f"{type(exc).__name__}: {text}", dirty


def dirty(exc: Exception, url: str) -> bool:
    """Whether the httpx error's text holds the signed url (then it is never chained)."""
    if isinstance(exc, httpx.InvalidURL):
        return True
    return _scrub(exc, [url, _failed_url(exc, url)])[1]


def translated(exc: Exception, url: str, shown: str) -> Exception:
    """Our error for an httpx failure of a download, with no signed url in its text.

    Timeouts, DecodingError, protocol and network errors alike mean the body did not
    arrive intact; the caller chains the httpx error only when its text is free of the
    signed url (:func:`dirty`), so a traceback in the result backend cannot leak it.
    """
    if isinstance(exc, httpx.InvalidURL):
        return UnsafeUrl(f"malformed url: {shown}")
    failed = _failed_url(exc, url)
    text, _ = _scrub(exc, [url, failed])
    what = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
    return TransportFailure(f"download {what} ({text}): {redact_url(failed)}")


def hop_timeout(client: httpx.Client, remaining: float) -> httpx.Timeout:
    # A single network wait may not outlast the time left when this hop starts; the
    # stream loop checks the deadline between chunks.
    base = client.timeout

    def cap(value: float | None) -> float:
        return remaining if value is None else min(value, remaining)

    return httpx.Timeout(
        connect=cap(base.connect), read=cap(base.read), write=cap(base.write), pool=cap(base.pool)
    )
