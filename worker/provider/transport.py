"""An httpx transport whose every call has an overall deadline, whatever the peer does.

httpx's timeouts bound one network operation each: a provider that trickles its reply a
byte at a time holds a call for as long as it likes, and Celery's time limits cannot stop
it under the thread pool the fleet recommends. Here every connect, read and write is
given at most the time left until the call's deadline, so the whole call (connect,
request, headers and body) ends by then.

The deadline is set per call with :func:`deadline` and lives in a context variable, so
threads sharing one client each keep their own.
"""

from __future__ import annotations

import contextlib
import contextvars
import ssl
import time
import typing
from collections.abc import Iterable, Iterator

import httpcore
import httpx

from worker.provider.urlsafety import AddressGuard

__all__ = ["DEFAULT_LIMITS", "deadline", "make_transport", "time_left"]

DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "relaydance_http_deadline", default=None
)


@contextlib.contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """Give every network operation inside the block at most ``seconds`` in all."""
    if seconds is None:
        yield
        return
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def time_left() -> float | None:
    """Seconds until the current call's deadline, or None outside :func:`deadline`."""
    ends = _deadline.get()
    return None if ends is None else ends - time.monotonic()


def _cap(timeout: float | None, error: type[httpcore.TimeoutException]) -> float | None:
    left = time_left()
    if left is None:
        return timeout
    if left <= 0:
        raise error("the call's overall deadline passed")
    return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _cap(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _cap(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(
            ssl_context, server_hostname, _cap(timeout, httpcore.ConnectTimeout)
        )
        return _Stream(inner)

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(
            host, port, _cap(timeout, httpcore.ConnectTimeout), local_address, socket_options
        )
        return _Stream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_unix_socket(
            path, _cap(timeout, httpcore.ConnectTimeout), socket_options
        )
        return _Stream(stream)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def make_transport(
    *, limits: httpx.Limits = DEFAULT_LIMITS, guard_addresses: bool = False
) -> httpx.HTTPTransport:
    """An ``httpx.HTTPTransport`` whose connections honour :func:`deadline`.

    With ``guard_addresses`` (downloads from provider URLs) every connection goes through
    :class:`worker.provider.urlsafety.AddressGuard`: only to an address the SSRF rules allow.
    """
    backend: httpcore.NetworkBackend = _Backend()
    if guard_addresses:
        backend = AddressGuard(backend)
    transport = httpx.HTTPTransport(limits=limits)
    # httpx builds its pool without a way to pass a network backend; the pool is rebuilt
    # with the same options and ours. tests/unit/test_transport.py guards this against changes.
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=backend,
    )
    return transport
