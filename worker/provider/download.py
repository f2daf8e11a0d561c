"""Safe, streaming download of a finished clip (or a still) into any byte sink.

The provider URL is untrusted and signed: every hop is checked by the SSRF rules,
redirects are followed by hand (at most :data:`MAX_REDIRECTS`), and the body is streamed
into the sink while it is counted against a cap, checked at its head and hashed; memory
stays flat whatever the size. The download knows nothing of where the bytes go: a sink
is anything with ``write`` (:class:`ByteSink`), and committing or discarding what it took
is its opener's business (the job's step, through :mod:`worker.storage`). The client and
the telling of its failures without the signed URL are in
:mod:`worker.provider.download_client`.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import httpx

from worker.errors import (
    DownloadRejected,
    NotFound,
    RateLimited,
    RetryableStatus,
    ServerError,
    TransportFailure,
    UnexpectedResponse,
    UnsafeUrl,
)
from worker.provider.download_client import dirty, hop_timeout, make_download_client, translated
from worker.provider.retry_after import parse_retry_after
from worker.provider.urlsafety import check_url, connect_only_to, redact_url

__all__ = [
    "MAX_REDIRECTS",
    "MP4_HEAD",
    "ByteSink",
    "HeadCheck",
    "Streamed",
    "UrlExpired",
    "make_download_client",
    "stream_checked",
    "stream_video",
]

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 5
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_EXPIRED_CODES = frozenset({403, 404, 410})
_RETRY_CODES = frozenset({408, 409})


@dataclass(frozen=True)
class HeadCheck:
    """What a body must open with: its first ``length`` bytes, which ``refusal`` judges
    (the reason they are refused, or None); ``what`` names the file in messages."""

    length: int
    refusal: Callable[[bytes], str | None]
    what: str = "clip"


def _mp4_refusal(head: bytes) -> str | None:
    # An ISO-BMFF file opens with a box: 4 bytes of size, then its type, "ftyp" for mp4.
    return None if head[4:8] == b"ftyp" else "not an mp4 (no ftyp box)"


MP4_HEAD = HeadCheck(8, _mp4_refusal)


class UrlExpired(NotFound):
    """HTTP 403/404/410 on the download URL: the signed URL expired; re-fetch the task."""

    code = "url_expired"


class ByteSink(Protocol):
    """Where a streamed body goes: a file, an upload that takes it part by part, memory."""

    def write(self, data: bytes, /) -> object: ...


def _raise_for_status(response: httpx.Response, shown: str) -> None:
    status = response.status_code
    if status == 200:
        return
    if status in _EXPIRED_CODES:
        raise UrlExpired(f"download url answered HTTP {status}: {shown}", status_code=status)
    if status == 429:
        raise RateLimited(
            f"download url answered HTTP 429: {shown}",
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )
    if status >= 500:
        raise ServerError(f"download url answered HTTP {status}: {shown}", status_code=status)
    if status in _RETRY_CODES:  # request timeout, conflict: the same GET may succeed later
        raise RetryableStatus(f"download url answered HTTP {status}: {shown}", status_code=status)
    raise DownloadRejected(f"download url answered HTTP {status}: {shown}", status_code=status)


def _open(url: str, *, client: httpx.Client, allow_local: bool, deadline: float) -> httpx.Response:
    """Send GET, following at most MAX_REDIRECTS redirects, each re-checked; status 200 only."""
    current = url
    for _hop in range(MAX_REDIRECTS + 1):
        shown = redact_url(current)
        checked = check_url(current, allow_local=allow_local)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TransportFailure(f"download deadline passed before connecting: {shown}")
        request = client.build_request("GET", current, timeout=hop_timeout(client, remaining))
        with connect_only_to(current, checked, allow_local=allow_local):
            response = client.send(request, stream=True, follow_redirects=False)
        if response.status_code not in _REDIRECT_CODES:
            try:
                _raise_for_status(response, shown)
            except BaseException:
                response.close()
                raise
            return response
        location = response.headers.get("location")
        response.close()
        if not location:
            raise UnexpectedResponse(f"redirect without a Location: {shown}")
        try:
            current = str(response.url.join(location))
        except httpx.InvalidURL:
            raise UnsafeUrl(f"redirect to a malformed url from {shown}") from None
    raise UnsafeUrl(f"more than {MAX_REDIRECTS} redirects from {redact_url(url)}")


def _check_declared_size(
    response: httpx.Response, max_bytes: int, shown: str, *, what: str = "clip"
) -> None:
    declared = response.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > max_bytes:
        raise DownloadRejected(
            f"{what} is {int(declared)} bytes, over the cap of {max_bytes}: {shown}"
        )


def _stream_to(
    response: httpx.Response,
    handle: ByteSink,
    *,
    max_bytes: int,
    deadline: float,
    chunk_size: int,
    shown: str,
    on_progress: Callable[[int], None] | None = None,
    check: HeadCheck = MP4_HEAD,
) -> tuple[int, str]:
    """Write the body to ``handle``; return (size, hex sha256) after the checks pass."""
    digest = hashlib.sha256()
    size = 0
    head = b""
    for chunk in response.iter_bytes(chunk_size):
        size += len(chunk)
        if size > max_bytes:
            raise DownloadRejected(f"{check.what} exceeds the cap of {max_bytes} bytes: {shown}")
        if len(head) < check.length:
            head += chunk[: check.length - len(head)]
            reason = check.refusal(head) if len(head) == check.length else None
            if reason:
                raise DownloadRejected(f"{reason}: {shown}")
        digest.update(chunk)
        handle.write(chunk)
        if on_progress is not None:
            on_progress(size)
        if time.monotonic() > deadline:
            raise TransportFailure(f"download deadline passed after {size} bytes: {shown}")
    if len(head) < check.length:
        reason = check.refusal(head) or f"{check.what} too short"
        raise DownloadRejected(f"{reason} ({size} bytes): {shown}")
    return size, digest.hexdigest()


@dataclass(frozen=True)
class Streamed:
    """What :func:`stream_video` delivered to its sink: byte count, hex sha256, seconds."""

    size: int
    sha256: str
    seconds: float


def stream_video(
    url: str,
    sink: ByteSink,
    *,
    client: httpx.Client,
    max_bytes: int,
    allow_local: bool,
    overall_timeout: float,
    chunk_size: int = 1 << 16,
    on_progress: Callable[[int], None] | None = None,
) -> Streamed:
    """Stream the clip at ``url`` into ``sink``, checked, capped and hashed.

    It returns only when the whole body arrived, within ``max_bytes`` and
    ``overall_timeout``, and opens with an ``ftyp`` box; the caller then commits what the
    sink holds, and discards it on any exception. Nothing reaches the sink before the URL
    (and every redirect) passed the SSRF rules and answered 200 with an acceptable size.
    ``on_progress`` is called with the byte count after every chunk (a heartbeat; what it
    raises ends the download).

    Raises:
        UnsafeUrl: the url or a redirect is refused by the SSRF rules, or too many hops.
        UrlExpired: HTTP 403/404/410; re-fetch the task for a fresh url and retry.
        DownloadRejected: over ``max_bytes``, not an mp4, or another unusable answer.
        RateLimited, RetryableStatus (408/409), ServerError, TransportFailure: transient;
            retry later.
        Errors of the sink itself pass through unchanged.
    """
    return stream_checked(url, sink, check=MP4_HEAD, client=client, max_bytes=max_bytes,
                          allow_local=allow_local, overall_timeout=overall_timeout,
                          chunk_size=chunk_size, on_progress=on_progress)  # fmt: skip


def stream_checked(
    url: str,
    sink: ByteSink,
    *,
    check: HeadCheck,
    client: httpx.Client,
    max_bytes: int,
    allow_local: bool,
    overall_timeout: float,
    chunk_size: int = 1 << 16,
    on_progress: Callable[[int], None] | None = None,
) -> Streamed:
    """:func:`stream_video` for any kind of file: the body must open as ``check`` says."""
    started = time.monotonic()
    deadline = started + overall_timeout
    shown = redact_url(url)
    try:
        response = _open(url, client=client, allow_local=allow_local, deadline=deadline)
        try:
            shown = redact_url(str(response.url))
            _check_declared_size(response, max_bytes, shown, what=check.what)
            size, sha256 = _stream_to(response, sink, max_bytes=max_bytes, deadline=deadline,
                                      chunk_size=chunk_size, shown=shown,
                                      on_progress=on_progress, check=check)  # fmt: skip
        finally:
            response.close()
    except (httpx.HTTPError, httpx.StreamError, httpx.InvalidURL) as exc:
        raise translated(exc, url, shown) from (None if dirty(exc, url) else exc)
    return Streamed(size=size, sha256=sha256, seconds=time.monotonic() - started)
