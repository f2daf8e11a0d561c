"""A semaphore per key alias, with a first-come first-served line of waiters.

A slot is held from submit until the remote task is final, however long the provider
takes: no timer ever takes it away, because the provider counts a live task against the
key whatever happened to the worker that submitted it. Slots belong to job records, and
the reconciler (:mod:`worker.job.slots`, run by the sweeper) frees those whose job no longer
needs one (final, missing, never submitted) and takes back any a live job lost. Holders
are kept in a sorted set (scored by when they took the slot); waiters stand in a second
sorted set scored by arrival, so a released slot goes to the longest waiter at once, in
the same script, instead of sitting idle until someone's countdown ends.

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
-- Move waiters from the head of the line into free slots.
local function fill(holders, line, adaptive, configured, now)
  local free = effective(adaptive, configured) - redis.call('ZCARD', holders)
  local granted = {}
  if free <= 0 then return granted end
  local popped = redis.call('ZPOPMIN', line, free)
  for j = 1, #popped, 2 do
    redis.call('ZADD', holders, fmt(now), popped[j])
    granted[#granted + 1] = popped[j]
  end
  return granted
end
"""

# KEYS: holders line seq adaptive registry; ARGV: now holder configured wait alias
# Returns {granted 0/1, position or 0, {other holders granted on the way}}.
_ACQUIRE = (
    LUA_PRELUDE
    + _FILL
    + """
local now = clock(ARGV[1])
local holder = ARGV[2]
redis.call('SADD', KEYS[5], ARGV[5])
if redis.call('ZSCORE', KEYS[1], holder) then
  return {1, 0, {}}
end
local was_waiting = redis.call('ZSCORE', KEYS[2], holder)
if not was_waiting then
  redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[3]), holder)
end
-- Waiters ahead of this holder get free slots first: arrival order is kept.
local granted = fill(KEYS[1], KEYS[2], KEYS[4], tonumber(ARGV[3]), now)
local others, mine = {}, 0
for _, id in ipairs(granted) do
  if id == holder then mine = 1 else others[#others + 1] = id end
end
if mine == 1 then return {1, 0, others} end
if ARGV[4] == '0' and not was_waiting then
  redis.call('ZREM', KEYS[2], holder)
  return {0, 0, others}
end
return {0, redis.call('ZRANK', KEYS[2], holder) + 1, others}
"""
)

# KEYS: holders line adaptive; ARGV: now holder-or-empty configured
_RELEASE = (
    LUA_PRELUDE
    + _FILL
    + """
local now = clock(ARGV[1])
if ARGV[2] ~= '' then
  redis.call('ZREM', KEYS[1], ARGV[2])
  redis.call('ZREM', KEYS[2], ARGV[2])
end
return fill(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[3]), now)
"""
)

# KEYS: holders line registry; ARGV: now holder alias. A slot for a job whose remote task
# is live, whatever the limit: the provider already counts it. Returns 1 if newly taken.
_TAKE = (
    LUA_PRELUDE
    + """
redis.call('SADD', KEYS[3], ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[2])
return redis.call('ZADD', KEYS[1], 'NX', fmt(clock(ARGV[1])), ARGV[2])
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
    """Concurrency slots and a FIFO line of waiters, per key alias, in Redis."""

    def __init__(
        self,
        redis: redis.Redis,
        *,
        prefix: str = "rd:limits",
        clock: Clock | None = None,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._clock = clock
        self._acquire = redis.register_script(_ACQUIRE)
        self._release = redis.register_script(_RELEASE)
        self._take = redis.register_script(_TAKE)
        self._push_front = redis.register_script(_PUSH_FRONT)

    def _keys(self, alias: str) -> LimitKeys:
        return LimitKeys(self._prefix, check_alias(alias))

    def acquire(self, alias: str, holder: str, *, limit: int, wait: bool = True) -> Acquire:
        """Take a slot, or join the key's line; re-taking a held slot changes nothing.

        Waiters ahead get free slots first (see :attr:`Acquire.also_granted`). A holder
        already in line keeps its place. With ``wait=False`` a holder not yet in line is
        not added to it.
        """
        k = self._keys(alias)
        granted, position, others = self._acquire(
            keys=[k.holders, k.line, k.seq, k.adaptive, k.registry],
            args=[now_arg(self._clock), _holder(holder), _limit(limit), int(wait), alias],
        )
        also = tuple(text(o) for o in others)
        if also:
            logger.debug("key %s: slots granted to waiters %s", alias, ", ".join(also))
        return Acquire(granted=bool(granted), position=int(position) or None, also_granted=also)

    def take(self, alias: str, holder: str) -> bool:
        """Hold a slot for a job whose remote task is live, over the limit if need be.

        The provider already counts such a task against the key; not counting it here
        would let another job submit into a full key. Returns True if newly taken.
        """
        k = self._keys(alias)
        return bool(
            self._take(
                keys=[k.holders, k.line, k.registry],
                args=[now_arg(self._clock), _holder(holder), alias],
            )
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
            args=[now_arg(self._clock), holder, _limit(limit)],
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
        """Whether the holder has a slot."""
        return self._redis.zscore(self._keys(alias).holders, _holder(holder)) is not None

    def in_use(self, alias: str) -> int:
        """Slots held."""
        return int(self._redis.zcard(self._keys(alias).holders))

    def holders(self, alias: str) -> list[str]:
        """Every holder of a slot of the key, oldest first."""
        members = self._redis.zrange(self._keys(alias).holders, 0, -1)
        return [text(h) for h in members if isinstance(h, bytes | str)]

    def waiting(self, alias: str) -> int:
        """Holders in line."""
        return int(self._redis.zcard(self._keys(alias).line))
