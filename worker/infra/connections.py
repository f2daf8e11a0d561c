"""Redis connections from one URL setting: plain, TLS, unix socket, or Redis Sentinel.

A Sentinel URL lists the sentinels, separated by ``;``, the way Celery's Redis transport
reads it; the master's name is ``RELAYDANCE_REDIS_SENTINEL_MASTER``::

    sentinel://:password@sentinel-1:26379/0;sentinel://:password@sentinel-2:26379/0
"""

from __future__ import annotations

from typing import Any

import redis
from redis.sentinel import Sentinel

from config.redis_url import is_sentinel, parse_sentinel_url

__all__ = ["redis_client"]


def redis_client(url: str, *, master: str | None = None, **options: Any) -> redis.Redis:
    """A client for ``url``; for a Sentinel URL, one that follows the current master."""
    if not is_sentinel(url):
        return redis.Redis.from_url(url, **options)
    if not master:
        raise ValueError("a sentinel:// URL needs RELAYDANCE_REDIS_SENTINEL_MASTER")
    parsed = parse_sentinel_url(url)
    sentinel = Sentinel(  # type: ignore[no-untyped-call,unused-ignore]
        parsed.sentinels, socket_timeout=options.get("socket_timeout", 5.0)
    )
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call,unused-ignore]
        master, db=parsed.db, password=parsed.password, **options
    )
    return client
