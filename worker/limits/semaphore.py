"""A leased semaphore per key alias, with a first-come first-served line of waiters.

A slot is held from submit until the remote task is final. Holders are kept in a sorted set
scored by lease expiry; a holder renews its lease on every poll, and one that dies loses its
slot when the lease runs out, never while it still renews. Waiters stand in a second sorted
set scored by arrival, so a released slot goes to the longest waiter at once, in the same
script, instead of sitting idle until someone's countdown ends. Every script first drops
expired leases, so a dead holder's slot is reused by whatever call comes next.

The limit that scripts apply is the smaller of the configured limit (passed by the caller)
and the one the key learned from 429s (see :mod:`worker.limits.adaptive`). Lowering the
limit never takes a slot away from a holder; it only stops new grants until enough holders
have finished.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

from ._common import LUA_PRELUDE, Clock, LimitKeys, check_alias, now_arg, text

__all__ = ["Acquire", "SlotQueue"]

logger = logging.getLogger(__name__)

_FILL = """
local function purge(holders, now)
  redis.call('ZREMRANGEBYSCORE', holders, '-inf', fmt(now))
end

-- Move waiters from the head of the line into free slots, each with a fresh lease.
local function fill(holders, line, adaptive, configured, now, lease)
  local free = effective(adaptive, configured) - redis.call('ZCARD', holders)
  local granted = {}
  if free <= 0 then return granted end
  local popped = redis.call('ZPOPMIN', line, free)
  for j = 1, #popped, 2 do
    redis.call('ZADD', holders, fmt(now + lease), popped[j])
    granted[#granted + 1] = popped[j]
  end
  return granted
end
"""

# KEYS: holders line seq adaptive registry; ARGV: now holder configured lease wait alias
# Returns {granted 0/1, position or 0, {other holders granted on the way}}.
_ACQUIRE = (
    LUA_PRELUDE
    + _FILL
    + """
local now = clock(ARGV[1])
local holder, lease = ARGV[2], tonumber(ARGV[4])
redis.call('SADD', KEYS[5], ARGV[6])
purge(KEYS[1], now)
if redis.call('ZSCORE', KEYS[1], holder) then
  redis.call('ZADD', KEYS[1], fmt(now + lease), holder)
  return {1, 0, {}}
end
local was_waiting = redis.call('ZSCORE', KEYS[2], holder)
if not was_waiting then
  redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[3]), holder)
end
-- Waiters ahead of this holder get free slots first: arrival order is kept.
local granted = fill(KEYS[1], KEYS[2], KEYS[4], tonumber(ARGV[3]), now, lease)
local others, mine = {}, 0
for _, id in ipairs(granted) do
  if id == holder then mine = 1 else others[#others + 1] = id end
end
if mine == 1 then return {1, 0, others} end
if ARGV[5] == '0' and not was_waiting then
  redis.call('ZREM', KEYS[2], holder)
  return {0, 0, others}
end
return {0, redis.call('ZRANK', KEYS[2], holder) + 1, others}
"""
)

# KEYS: holders line adaptive; ARGV: now holder-or-empty configured lease
_RELEASE = (
    LUA_PRELUDE
    + _FILL
    + """
local now = clock(ARGV[1])
if ARGV[2] ~= '' then
  redis.call('ZREM', KEYS[1], ARGV[2])
  redis.call('ZREM', KEYS[2], ARGV[2])
end
purge(KEYS[1], now)
return fill(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[3]), now, tonumber(ARGV[4]))
"""
)

# KEYS: holders; ARGV: now holder lease
_RENEW = (
    LUA_PRELUDE
    + """
local now = clock(ARGV[1])
local expiry = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[2]))
if not expiry then return 0 end
if expiry <= now then
  redis.call('ZREM', KEYS[1], ARGV[2])
  return 0
end
redis.call('ZADD', KEYS[1], fmt(now + tonumber(ARGV[3])), ARGV[2])
return 1
"""
)

# KEYS: holders line seq; ARGV: holder
_PUSH_FRONT = """
redis.call('ZREM', KEYS[1], ARGV[1])
local head = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if head[1] == ARGV[1] then return 0 end
local score
if head[1] then
  score = tonumber(head[2]) - 1
else
  score = tonumber(redis.call('GET', KEYS[3]) or '0')
end
redis.call('ZADD', KEYS[2], score, ARGV[1])
return 1
"""

# KEYS: holders; ARGV: now holder-or-empty. The holder's lease is live / the live lease count.
_LIVE = (
    LUA_PRELUDE
    + """
local now = clock(ARGV[1])
if ARGV[2] == '' then
  return redis.call('ZCOUNT', KEYS[1], '(' .. fmt(now), '+inf')
end
local expiry = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[2]))
if expiry and expiry > now then return 1 end
return 0
"""
)


@dataclass(frozen=True)
class Acquire:
    """Outcome of :meth:`SlotQueue.acquire`.

    ``position`` is the place in line when waiting (1 = next), ``None`` otherwise.
    ``also_granted`` names waiters ahead of this holder that the call moved into free slots;
    the caller nudges them just as it does for the ids :meth:`SlotQueue.release` returns.
    """

    granted: bool
    position: int | None = None
    also_granted: tuple[str, ...] = ()


def _holder(holder: str) -> str:
    if not holder:
        raise ValueError("holder id must not be empty")
    return holder


def _limit(limit: int) -> int:
    if limit < 1:
        raise ValueError(f"concurrency limit must be at least 1, got {limit}")
    return limit


class SlotQueue:
    """Leased concurrency slots and a FIFO line of waiters, per key alias, in Redis."""

    def __init__(
        self,
        redis: redis.Redis,
        *,
        lease_seconds: float = 90.0,
        prefix: str = "rd:limits",
        clock: Clock | None = None,
    ) -> None:
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be positive, got {lease_seconds}")
        self._redis = redis
        self._lease = str(round(lease_seconds * 1_000_000))
        self._prefix = prefix
        self._clock = clock
        self._acquire = redis.register_script(_ACQUIRE)
        self._release = redis.register_script(_RELEASE)
        self._renew = redis.register_script(_RENEW)
        self._push_front = redis.register_script(_PUSH_FRONT)
        self._live = redis.register_script(_LIVE)

    def _keys(self, alias: str) -> LimitKeys:
        return LimitKeys(self._prefix, check_alias(alias))

    def acquire(self, alias: str, holder: str, *, limit: int, wait: bool = True) -> Acquire:
        """Take a slot, or join the key's line; re-taking a held slot only renews it.

        Waiters ahead get free slots first (see :attr:`Acquire.also_granted`). A holder
        already in line keeps its place. With ``wait=False`` a holder not yet in line is
        not added to it.
        """
        k = self._keys(alias)
        granted, position, others = self._acquire(
            keys=[k.holders, k.line, k.seq, k.adaptive, k.registry],
            args=[
                now_arg(self._clock),
                _holder(holder),
                _limit(limit),
                self._lease,
                int(wait),
                alias,
            ],
        )
        also = tuple(text(o) for o in others)
        if also:
            logger.debug("key %s: slots granted to waiters %s", alias, ", ".join(also))
        return Acquire(granted=bool(granted), position=int(position) or None, also_granted=also)

    def renew(self, alias: str, holder: str) -> bool:
        """Extend the holder's lease; False if it no longer holds a slot."""
        k = self._keys(alias)
        return bool(
            self._renew(keys=[k.holders], args=[now_arg(self._clock), _holder(holder), self._lease])
        )

    def release(self, alias: str, holder: str, *, limit: int) -> list[str]:
        """Free the holder's slot (or its place in line) and hand free slots to waiters.

        Returns the waiters that now hold a slot, for the caller to nudge. Releasing a
        slot the holder does not hold changes nothing of its own.
        """
        return self._fill(alias, _holder(holder), limit)

    def grant_waiters(self, alias: str, *, limit: int) -> list[str]:
        """Fill every free slot from the head of the line; returns the waiters granted."""
        return self._fill(alias, "", limit)

    def _fill(self, alias: str, holder: str, limit: int) -> list[str]:
        k = self._keys(alias)
        granted = self._release(
            keys=[k.holders, k.line, k.adaptive],
            args=[now_arg(self._clock), holder, _limit(limit), self._lease],
        )
        return [text(g) for g in granted]

    def push_front(self, alias: str, holder: str) -> None:
        """Give up the holder's slot, if any, and put it at the head of the line."""
        k = self._keys(alias)
        self._push_front(keys=[k.holders, k.line, k.seq], args=[_holder(holder)])

    def remove_waiter(self, alias: str, holder: str) -> bool:
        """Take the holder out of the line (on cancel); True if it was waiting."""
        return bool(self._redis.zrem(self._keys(alias).line, _holder(holder)))

    def position(self, alias: str, holder: str) -> int | None:
        """The holder's place in line (1 = next), or None when not waiting."""
        rank = self._redis.zrank(self._keys(alias).line, _holder(holder))
        return rank + 1 if isinstance(rank, int) else None

    def holds(self, alias: str, holder: str) -> bool:
        """Whether the holder has a slot whose lease has not run out."""
        k = self._keys(alias)
        return bool(self._live(keys=[k.holders], args=[now_arg(self._clock), _holder(holder)]))

    def in_use(self, alias: str) -> int:
        """Slots held under a live lease."""
        k = self._keys(alias)
        return int(self._live(keys=[k.holders], args=[now_arg(self._clock), ""]))

    def waiting(self, alias: str) -> int:
        """Holders in line."""
        return int(self._redis.zcard(self._keys(alias).line))
