"""A circuit breaker per provider route (provider and base URL), shared by every worker.

Consecutive 5xx replies, connection failures or timeouts on one route open its breaker.
While it is open, the lines of every key on the route stop (no submission starts: see
:mod:`.semaphore`), and the request gate (:mod:`.rate`) makes every other call wait: polls
and downloads back off instead of failing. Half-open, one call at a time probes the route
(the first to ask after ``probe_at``); a probe that fails doubles the wait before the
next, up to ``probe_max`` seconds, with jitter, so an outage draws a few probes, not a
storm. The first call that succeeds closes the breaker, and the lines move at once.

The windows in which a breaker was open are kept (``outages``), so that deadlines (a job's
poll deadline) do not count time in which the provider could not be asked.
"""

from __future__ import annotations

import hashlib
import logging
import random
from dataclasses import dataclass

import redis

from ._common import LUA_PRELUDE, Clock, breaker_key, check_alias, now_arg, text
from .holds import OUTAGE_KEEP_US, _overlap

__all__ = ["BreakerState", "Breakers", "route_id"]

logger = logging.getLogger(__name__)

FAILURES_TTL_MS = 600_000  # consecutive failures further apart than this do not add up

# KEYS: failures open registry; ARGV: now threshold first_us max_us jitter reason holder route
# Returns {what happened: counted | opened | open | probe_failed, consecutive failures}.
_FAILED = (
    LUA_PRELUDE
    + f"""
local now = clock(ARGV[1])
redis.call('SADD', KEYS[3], ARGV[8])
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], {FAILURES_TTL_MS})
local jitter = tonumber(ARGV[5])
if redis.call('EXISTS', KEYS[2]) == 0 then
  if n < tonumber(ARGV[2]) then return {{'counted', n}} end
  local first = tonumber(ARGV[3])
  redis.call('HSET', KEYS[2], 'since', fmt(now), 'reason', ARGV[6], 'last_at', fmt(now),
             'probe_wait', fmt(first), 'probe_at', fmt(now + first * jitter), 'probe', '',
             'probes', 0, 'failures', n)
  return {{'opened', n}}
end
redis.call('HSET', KEYS[2], 'reason', ARGV[6], 'last_at', fmt(now), 'failures', n)
if ARGV[7] ~= '' and redis.call('HGET', KEYS[2], 'probe') == ARGV[7] then
  local wait = math.min(tonumber(ARGV[4]), 2 * tonumber(redis.call('HGET', KEYS[2], 'probe_wait')))
  redis.call('HSET', KEYS[2], 'probe_wait', fmt(wait), 'probe_at', fmt(now + wait * jitter),
             'probe', '')
  return {{'probe_failed', n}}
end
return {{'open', n}}
"""
)

# KEYS: failures open outages; ARGV: now. Returns {1 if this closed the breaker, since}.
_SUCCEEDED = (
    LUA_PRELUDE
    + f"""
local now = clock(ARGV[1])
redis.call('DEL', KEYS[1])
local since = redis.call('HGET', KEYS[2], 'since')
if not since then return {{0, '0'}} end
redis.call('ZADD', KEYS[3], fmt(now), since .. ':' .. fmt(now))
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', fmt(now - {OUTAGE_KEEP_US}))
redis.call('DEL', KEYS[2])
return {{1, since}}
"""
)


def route_id(provider: str, base_url: str) -> str:
    """The name of a provider route's breaker: the provider and a digest of its base URL."""
    return f"{provider}-{hashlib.sha256(base_url.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class BreakerState:
    """An open breaker: since when, why, when the next probe may go, probes so far."""

    route: str
    since: float
    reason: str
    probe_at: float
    probes: int
    failures: int


class Breakers:
    """Circuit breakers per provider route, in Redis."""

    def __init__(
        self,
        redis: redis.Redis,
        *,
        prefix: str = "rd:limits",
        clock: Clock | None = None,
        failures: int = 5,
        probe_max: float = 300.0,
    ) -> None:
        if failures < 1:
            raise ValueError(f"failures must be at least 1, got {failures}")
        self._redis = redis
        self._prefix = prefix
        self._clock = clock
        self.threshold = failures
        self.probe_max = probe_max
        self._failed = redis.register_script(_FAILED)
        self._succeeded = redis.register_script(_SUCCEEDED)

    def configure(self, *, failures: int, probe_max: float) -> None:
        """Apply the settings' threshold and longest probe wait from now on."""
        self.threshold, self.probe_max = max(1, failures), probe_max

    def key(self, route: str) -> str:
        """The hash that exists while the route's breaker is open (the limits read it)."""
        return breaker_key(self._prefix, route)

    def _failures_key(self, route: str) -> str:
        return self.key(route).removesuffix(":open") + ":failures"

    def _outages_key(self, route: str) -> str:
        return self.key(route).removesuffix(":open") + ":outages"

    @property
    def _registry(self) -> str:
        return f"{self._prefix}:breakers"

    def failed(self, route: str, *, reason: str, holder: str = "") -> str:
        """Count a failed call on the route; returns ``counted``, ``opened``, ``open`` or
        ``probe_failed`` (``holder`` was the probe: the next one waits twice as long)."""
        first = min(self.probe_max, max(self.probe_max / 64, 0.05))
        what, _ = self._failed(
            keys=[self._failures_key(route), self.key(route), self._registry],
            args=[
                now_arg(self._clock), self.threshold, round(first * 1_000_000),
                round(self.probe_max * 1_000_000), repr(random.uniform(0.8, 1.2)),  # noqa: S311
                reason[:300], holder, check_alias(route),
            ],
        )  # fmt: skip
        return text(what)

    def succeeded(self, route: str) -> float | None:
        """A call on the route succeeded: reset its failures; if the breaker was open,
        close it and return since when it had been open (else None)."""
        closed, since = self._succeeded(
            keys=[self._failures_key(route), self.key(route), self._outages_key(route)],
            args=[now_arg(self._clock)],
        )
        return int(since) / 1_000_000 if closed else None

    def state(self, route: str) -> BreakerState | None:
        """The route's open breaker, or None when it is closed."""
        raw = self._redis.hgetall(self.key(route))
        if not raw:
            return None
        data = {text(k): text(v) for k, v in raw.items()}
        return BreakerState(
            route=route,
            since=int(data.get("since") or 0) / 1_000_000,
            reason=data.get("reason", ""),
            probe_at=int(data.get("probe_at") or 0) / 1_000_000,
            probes=int(data.get("probes") or 0),
            failures=int(data.get("failures") or 0),
        )

    def unwell(self, route: str) -> bool:
        """Whether the route's last calls failed: its breaker is open, or failures have
        counted up since the last call that succeeded."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.get(self._failures_key(route))
        pipe.exists(self.key(route))
        failures, opened = pipe.execute()
        return bool(int(failures or 0)) or bool(opened)

    def routes_seen(self) -> list[str]:
        """Every route that ever failed a call, sorted."""
        return sorted(text(r) for r in self._redis.smembers(self._registry))

    def outages(self, route: str, *, start: float, end: float) -> float:
        """Seconds between ``start`` and ``end`` in which the route's breaker was open."""
        return _overlap(self._redis, self._outages_key(route), start, end)
