"""The Redis broker transport, with one Redis client per channel instead of one per call.

kombu's Redis channel builds a new ``redis.Redis`` for every publish and acknowledgement
(its ``conn_or_acquire``), and building one costs about 0.13 ms of CPU, because redis-py
fills a case-insensitive table of ~170 response callbacks for each client
(redis/redis-py#3624): some fifteen clients per job. A client is thread-safe (each
command takes a connection from the pool), so one per channel, built on first use, serves
every call. ``config.celery`` names these transports for the broker URL's scheme.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu.transport import redis as kombu_redis

__all__ = ["SentinelTransport", "Transport"]


class _ReusedClient:
    _reused: Any = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client is not None:
            yield client
            return
        if self._reused is None:
            self._reused = self._create_client()  # type: ignore[attr-defined]
        yield self._reused


class Channel(_ReusedClient, kombu_redis.Channel):
    """kombu's Redis channel, reusing one client."""


class SentinelChannel(_ReusedClient, kombu_redis.SentinelChannel):
    """kombu's Redis Sentinel channel, reusing one client."""


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`Channel`."""

    Channel = Channel


class SentinelTransport(kombu_redis.SentinelTransport):
    """kombu's Redis Sentinel transport with :class:`SentinelChannel`."""

    Channel = SentinelChannel
