"""Safe, atomic, streaming download of a finished clip.

The provider URL is untrusted and signed: every hop is checked by the SSRF rules,
redirects are followed by hand (at most :data:`MAX_REDIRECTS`), the body is streamed
to a temp file in the destination directory while it is counted against a cap and
hashed, and only a complete mp4 is renamed into place. A failure leaves neither a
temp file nor a file under the final name. Memory stays flat whatever the size.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
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
from worker.provider.retry_after import parse_retry_after
from worker.provider.transport import make_transport
from worker.provider.urlsafety import check_url, connect_only_to, redact_url

__all__ = [
    "MAX_REDIRECTS",
    "ByteSink",
    "DownloadResult",
    "Streamed",
    "UrlExpired",
    "cleanup_partials",
    "download_video",
    "make_download_client",
    "stream_video",
    "write_manifest",
]

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 5
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_EXPIRED_CODES = frozenset({403, 404, 410})
_RETRY_CODES = frozenset({408, 409})
# An ISO-BMFF file opens with a box: 4 bytes of size, then its type, "ftyp" for mp4.
_HEAD_LEN = 8


class UrlExpired(NotFound):
    """HTTP 403/404/410 on the download URL: the signed URL expired; re-fetch the task."""

    code = "url_expired"


@dataclass(frozen=True)
class DownloadResult:
    """A clip in its final place: path, byte count, hex sha256, seconds spent."""

    path: Path
    size: int
    sha256: str
    seconds: float


class ByteSink(Protocol):
    """Where a streamed body goes: a file, or an upload that takes it part by part."""

    def write(self, data: bytes, /) -> object: ...


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


def _dirty(exc: Exception, url: str) -> bool:
    """Whether the httpx error's text holds the signed url (then it is never chained)."""
    if isinstance(exc, httpx.InvalidURL):
        return True
    return _scrub(exc, [url, _failed_url(exc, url)])[1]


def _translated(exc: Exception, url: str, shown: str) -> Exception:
    """Our error for an httpx failure of a download, with no signed url in its text.

    Timeouts, DecodingError, protocol and network errors alike mean the body did not
    arrive intact; the caller chains the httpx error only when its text is free of the
    signed url (:func:`_dirty`), so a traceback in the result backend cannot leak it.
    """
    if isinstance(exc, httpx.InvalidURL):
        return UnsafeUrl(f"malformed url: {shown}")
    failed = _failed_url(exc, url)
    text, _ = _scrub(exc, [url, failed])
    what = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
    return TransportFailure(f"download {what} ({text}): {redact_url(failed)}")


def _hop_timeout(client: httpx.Client, remaining: float) -> httpx.Timeout:
    # A single network wait may not outlast the time left when this hop starts; the
    # stream loop checks the deadline between chunks.
    base = client.timeout

    def cap(value: float | None) -> float:
        return remaining if value is None else min(value, remaining)

    return httpx.Timeout(
        connect=cap(base.connect), read=cap(base.read), write=cap(base.write), pool=cap(base.pool)
    )


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
        request = client.build_request("GET", current, timeout=_hop_timeout(client, remaining))
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


def _check_declared_size(response: httpx.Response, max_bytes: int, shown: str) -> None:
    declared = response.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > max_bytes:
        raise DownloadRejected(
            f"clip is {int(declared)} bytes, over the cap of {max_bytes}: {shown}"
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
) -> tuple[int, str]:
    """Write the body to ``handle``; return (size, hex sha256) after the checks pass."""
    digest = hashlib.sha256()
    size = 0
    head = b""
    for chunk in response.iter_bytes(chunk_size):
        size += len(chunk)
        if size > max_bytes:
            raise DownloadRejected(f"clip exceeds the cap of {max_bytes} bytes: {shown}")
        if len(head) < _HEAD_LEN:
            head += chunk[: _HEAD_LEN - len(head)]
            if len(head) == _HEAD_LEN and head[4:8] != b"ftyp":
                raise DownloadRejected(f"not an mp4 (no ftyp box): {shown}")
        digest.update(chunk)
        handle.write(chunk)
        if on_progress is not None:
            on_progress(size)
        if time.monotonic() > deadline:
            raise TransportFailure(f"download deadline passed after {size} bytes: {shown}")
    if len(head) < _HEAD_LEN:
        raise DownloadRejected(f"not an mp4 ({size} bytes): {shown}")
    return size, digest.hexdigest()


def _fsync_dir(directory: Path) -> None:
    # The rename is only durable once the directory entry itself is on disk.
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_name(name: str) -> None:
    if not name or name.startswith(".") or "/" in name or "\\" in name or "\x00" in name:
        raise ValueError(f"download name must be a plain file name, got {name!r}")


def download_video(
    url: str,
    *,
    dest_dir: Path,
    name: str,
    client: httpx.Client,
    max_bytes: int,
    allow_local: bool,
    overall_timeout: float,
    chunk_size: int = 1 << 16,
    on_progress: Callable[[int], None] | None = None,
) -> DownloadResult:
    """Stream ``url`` to ``dest_dir/<name>.mp4`` atomically, checked, capped and hashed.

    ``on_progress`` is called with the byte count after every chunk (a heartbeat).

    Raises:
        UnsafeUrl: the url or a redirect is refused by the SSRF rules, or too many hops.
        UrlExpired: HTTP 403/404/410; re-fetch the task for a fresh url and retry.
        DownloadRejected: over ``max_bytes``, not an mp4, or another unusable answer.
        RateLimited, RetryableStatus (408/409), ServerError, TransportFailure: transient;
            retry later.
    """
    _check_name(name)
    started = time.monotonic()
    deadline = started + overall_timeout
    shown = redact_url(url)
    final = dest_dir / f"{name}.mp4"
    tmp_path: Path | None = None
    try:
        response = _open(url, client=client, allow_local=allow_local, deadline=deadline)
        try:
            shown = redact_url(str(response.url))
            _check_declared_size(response, max_bytes, shown)
            with tempfile.NamedTemporaryFile(
                dir=dest_dir, prefix=f".{name}.", suffix=".part", delete=False
            ) as handle:
                tmp_path = Path(handle.name)
                size, sha256 = _stream_to(
                    response,
                    handle,
                    max_bytes=max_bytes,
                    deadline=deadline,
                    chunk_size=chunk_size,
                    shown=shown,
                    on_progress=on_progress,
                )
                handle.flush()
                os.fsync(handle.fileno())
        finally:
            response.close()
        os.replace(tmp_path, final)
        tmp_path = None
        _fsync_dir(dest_dir)
    except (httpx.HTTPError, httpx.StreamError, httpx.InvalidURL) as exc:
        raise _translated(exc, url, shown) from (None if _dirty(exc, url) else exc)
    finally:
        if tmp_path is not None:
            with contextlib.suppress(FileNotFoundError):
                tmp_path.unlink()
    seconds = time.monotonic() - started
    logger.info("downloaded %s to %s: %d bytes in %.2f s", shown, final, size, seconds)
    return DownloadResult(path=final, size=size, sha256=sha256, seconds=seconds)


def write_manifest(path: Path, data: Mapping[str, object]) -> Path:
    """Write ``data`` as JSON to ``path`` with a ``.json`` suffix, atomically; return it."""
    target = path.with_suffix(".json")
    body = json.dumps(dict(data), indent=2, sort_keys=True, default=str).encode() + b"\n"
    with tempfile.NamedTemporaryFile(
        dir=target.parent, prefix=f".{target.stem}.", suffix=".json.part", delete=False
    ) as handle:
        tmp_path = Path(handle.name)
        try:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        except BaseException:
            tmp_path.unlink(missing_ok=True)
            raise
    try:
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)
    return target


def cleanup_partials(dest_dir: Path, name: str, *, older_than: float = 0.0) -> int:
    """Remove temp files a killed attempt left for ``name``; return how many went.

    Only files untouched for ``older_than`` seconds go: a download still writing its temp
    file (another worker's, not yet noticed as superseded) keeps it.
    """
    _check_name(name)
    removed = 0
    cutoff = time.time() - older_than
    for leftover in dest_dir.glob(f".{glob.escape(name)}.*.part"):
        with contextlib.suppress(FileNotFoundError):
            if older_than and leftover.stat().st_mtime > cutoff:
                continue
            leftover.unlink()
            removed += 1
    if removed:
        logger.info("removed %d partial download(s) of %s in %s", removed, name, dest_dir)
    return removed


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
    """Stream ``url`` into ``sink`` with the checks of :func:`download_video`.

    It returns only when the whole body arrived, within the cap and the deadline, and
    opens with an ``ftyp`` box; the caller then commits what the sink holds, and discards
    it on any exception. Raises what :func:`download_video` raises; errors of the sink
    itself pass through unchanged.
    """
    started = time.monotonic()
    deadline = started + overall_timeout
    shown = redact_url(url)
    try:
        response = _open(url, client=client, allow_local=allow_local, deadline=deadline)
        try:
            shown = redact_url(str(response.url))
            _check_declared_size(response, max_bytes, shown)
            size, sha256 = _stream_to(
                response,
                sink,
                max_bytes=max_bytes,
                deadline=deadline,
                chunk_size=chunk_size,
                shown=shown,
                on_progress=on_progress,
            )
        finally:
            response.close()
    except (httpx.HTTPError, httpx.StreamError, httpx.InvalidURL) as exc:
        raise _translated(exc, url, shown) from (None if _dirty(exc, url) else exc)
    return Streamed(size=size, sha256=sha256, seconds=time.monotonic() - started)
