"""The gate every HTTP call to the provider passes: pauses first, then the request rate.

A call waits while its provider's breaker is open, while its key is held (a submission
for any hold; a read only when the key is revoked) and, for a submission, while the key
may not use its model: the first caller after the pause's probe time is its probe and
goes (see :mod:`.holds` and :mod:`.breaker`). Then the request rate per key alias, by GCRA:

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
from dataclasses import dataclass

import redis

from ._common import LUA_PRELUDE, Clock, LimitKeys, check_alias, now_arg, text

__all__ = ["Gate", "RequestRate"]

REQUEST_BUCKET_US = 1_000_000
REQUEST_BUCKETS = 60

# KEYS: tat pause requests registry hold breaker model_hold failures
# ARGV: now interval burst alias holder submit probe_every_us
# Returns {microseconds to wait (0: go; -1: until a person lifts a pause), why, failures}:
# why is '' or 'probe' when the call may go, else 'breaker', 'held', 'model', 'retry_after'
# or 'rate'; failures is the route's count of consecutive failed calls.
_THROTTLE = (
    LUA_PRELUDE
    + f"""
local now = clock(ARGV[1])
redis.call('SADD', KEYS[4], ARGV[4])
local holder, submit, every = ARGV[5], ARGV[6] == '1', tonumber(ARGV[7])
local failures = tonumber(redis.call('GET', KEYS[8]) or '0')
local probe = false
local function gate(key, why)
  local verdict, wait = pass(key, holder, now, every)
  if verdict == 'probe' then probe = true end
  if verdict == 'wait' then return {{wait, why, failures}} end
  return nil
end
local stopped = gate(KEYS[6], 'breaker')
if stopped then return stopped end
if submit or redis.call('HGET', KEYS[5], 'kind') == 'unauthorized' then
  stopped = gate(KEYS[5], 'held')
  if stopped then return stopped end
end
if submit then
  stopped = gate(KEYS[7], 'model')
  if stopped then return stopped end
end
local paused = tonumber(redis.call('GET', KEYS[2]))
if paused and paused > now then return {{paused - now, 'retry_after', failures}} end
local interval, burst = tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local allow_at = tat + interval - burst * interval
if now < allow_at then return {{math.ceil(allow_at - now), 'rate', failures}} end
local next_tat = tat + interval
redis.call('SET', KEYS[1], fmt(next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1)
ring_add(KEYS[3], now, {REQUEST_BUCKET_US}, {REQUEST_BUCKETS})
if probe then return {{0, 'probe', failures}} end
return {{0, '', failures}}
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


@dataclass(frozen=True)
class Gate:
    """Whether a call may go now: ``wait`` seconds (0: go) and why it waits (``breaker``,
    ``held``, ``model``, ``retry_after`` or ``rate``). ``probe``: the call may go as the
    probe of a paused key or breaker. ``failures``: its route's consecutive failures."""

    wait: float
    reason: str = ""
    probe: bool = False
    failures: int = 0

    @property
    def paused(self) -> bool:
        """Whether the call waits behind a pause (not just the request rate)."""
        return self.reason in ("breaker", "held", "model")


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
        return self.gate(alias, rate=rate, burst=burst).wait

    def gate(
        self,
        alias: str,
        *,
        rate: float,
        burst: int | None = None,
        holder: str = "",
        submit: bool = False,
        model: str = "",
        breaker: str = "",
        probe_every: float = 300.0,
    ) -> Gate:
        """Whether a call of ``holder`` (a job id) may go now; it is counted when it may.

        ``submit``: the call creates a task (every hold of the key stops it, and a hold of
        its ``model``). ``breaker``: the key of the call's provider breaker.
        """
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        if burst is None:
            burst = max(1, math.floor(rate))
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        k = self._keys(alias)
        breaker = breaker or k.hold + ":none"
        wait_us, why, failures = self._throttle(
            keys=[k.tat, k.pause, k.requests, k.registry, k.hold, breaker,
                  k.model_hold(model) if submit else k.hold + ":none",
                  breaker.removesuffix(":open") + ":failures"],
            args=[now_arg(self._clock), repr(1_000_000 / rate), burst, alias, holder,
                  int(submit), round(probe_every * 1_000_000)],
        )  # fmt: skip
        wait_us, why = int(wait_us), text(why)
        wait = probe_every if wait_us < 0 else wait_us / 1_000_000
        return Gate(wait=wait, reason="" if why == "probe" else why, probe=why == "probe",
                    failures=int(failures))  # fmt: skip

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
