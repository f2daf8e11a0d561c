"""A request-rate limit per key alias over every HTTP call (submit, poll, upload), by GCRA.

The generic cell rate algorithm keeps one number per key: the theoretical arrival time
(TAT) of the next request. A request may go when it is no more than ``burst`` emission
intervals early; then the TAT moves one interval on. A request that may not go is not
recorded, and the caller learns how long to wait, so it defers (a Celery countdown)
instead of failing. A pause (the provider's ``Retry-After``) holds back every request of the
key until it ends. Requests that go are counted per second for "requests in the last
minute".
"""

from __future__ import annotations

import math

import redis

from ._common import LUA_PRELUDE, Clock, LimitKeys, check_alias, now_arg

__all__ = ["RequestRate"]

REQUEST_BUCKET_US = 1_000_000
REQUEST_BUCKETS = 60

# KEYS: tat pause requests registry; ARGV: now interval burst alias
# Returns microseconds to wait, 0 when the request was recorded and may go now.
_THROTTLE = (
    LUA_PRELUDE
    + f"""
local now = clock(ARGV[1])
redis.call('SADD', KEYS[4], ARGV[4])
local paused = tonumber(redis.call('GET', KEYS[2]))
if paused and paused > now then return paused - now end
local interval, burst = tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local allow_at = tat + interval - burst * interval
if now < allow_at then return math.ceil(allow_at - now) end
local next_tat = tat + interval
redis.call('SET', KEYS[1], fmt(next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1)
ring_add(KEYS[3], now, {REQUEST_BUCKET_US}, {REQUEST_BUCKETS})
return 0
"""
)

# KEYS: pause; ARGV: now seconds. Extends, never shortens, an existing pause.
_PAUSE = (
    LUA_PRELUDE
    + """
local now = clock(ARGV[1])
local till = now + math.ceil(tonumber(ARGV[2]) * 1000000)
local current = tonumber(redis.call('GET', KEYS[1]))
if current and current >= till then return 0 end
redis.call('SET', KEYS[1], fmt(till), 'PX', math.ceil((till - now) / 1000) + 1)
return 1
"""
)

# KEYS: requests; ARGV: now
_COUNT = (
    LUA_PRELUDE
    + f"""
return ring_sum(KEYS[1], clock(ARGV[1]), {REQUEST_BUCKET_US}, {REQUEST_BUCKETS})
"""
)


class RequestRate:
    """GCRA request-rate limiter per key alias, shared by every worker through Redis."""

    def __init__(
        self, redis: redis.Redis, *, prefix: str = "rd:limits", clock: Clock | None = None
    ) -> None:
        self._prefix = prefix
        self._clock = clock
        self._throttle = redis.register_script(_THROTTLE)
        self._pause = redis.register_script(_PAUSE)
        self._count = redis.register_script(_COUNT)

    def _keys(self, alias: str) -> LimitKeys:
        return LimitKeys(self._prefix, check_alias(alias))

    def throttle(self, alias: str, *, rate: float, burst: int | None = None) -> float:
        """0.0 if a request may go now (and it is counted), else the seconds to wait.

        ``rate`` is requests per second; ``burst`` how many may go back to back after a
        quiet spell (default: one second's worth).
        """
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        if burst is None:
            burst = max(1, math.floor(rate))
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        k = self._keys(alias)
        wait_us = self._throttle(
            keys=[k.tat, k.pause, k.requests, k.registry],
            args=[now_arg(self._clock), repr(1_000_000 / rate), burst, alias],
        )
        return int(wait_us) / 1_000_000

    def pause(self, alias: str, seconds: float) -> None:
        """Hold back every request of the key for ``seconds`` (extends, never shortens)."""
        if seconds <= 0:
            return
        k = self._keys(alias)
        self._pause(keys=[k.pause], args=[now_arg(self._clock), repr(float(seconds))])

    def requests_last_minute(self, alias: str) -> int:
        """Requests that went in the last 60 seconds (per-second buckets)."""
        k = self._keys(alias)
        return int(self._count(keys=[k.requests], args=[now_arg(self._clock)]))
