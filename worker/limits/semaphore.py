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
-- Move waiters from the head of the line into free slots. A paused line (an account hold
-- or an open breaker) grants only its probe, when the probe waits in line.
local function fill(holders, line, adaptive, configured, now, hold, breaker)
  local free = effective(adaptive, configured) - redis.call('ZCARD', holders)
  local granted = {}
  if free <= 0 then return granted end
  local stop = paused_by(hold, breaker)
  if stop then
    local probe = redis.call('HGET', stop, 'probe')
    if probe and probe ~= '' and redis.call('ZREM', line, probe) == 1 then
      redis.call('ZADD', holders, fmt(now), probe)
      granted[1] = probe
    end
    return granted
  end
  local popped = redis.call('ZPOPMIN', line, free)
  for j = 1, #popped, 2 do
    redis.call('ZADD', holders, fmt(now), popped[j])
    granted[#granted + 1] = popped[j]
  end
  return granted
end

-- Put a holder at the head of the line (giving up its slot, if it held one).
local function to_front(holders, line, seq, holder)
  redis.call('ZREM', holders, holder)
  local head = redis.call('ZRANGE', line, 0, 0, 'WITHSCORES')
  if head[1] == holder then return end
  local score = tonumber(redis.call('GET', seq) or '0')
  if head[1] then score = tonumber(head[2]) - 1 end
  redis.call('ZADD', line, score, holder)
end
"""

# KEYS: holders line seq adaptive registry hold breaker model_hold parked
# ARGV: now holder configured wait alias probe_every_us
# Returns {granted 0/1, position or 0, {other holders granted on the way}, why, wait_us}:
# why is '' (as usual), 'probe' (the holder probes a paused line), 'held' or 'breaker' (the
# line is paused: the holder waits in it) or 'model' (the key may not use the holder's
# model: it waits off the line, parked, for wait_us).
_ACQUIRE = (
    LUA_PRELUDE
    + _FILL
    + """
local now = clock(ARGV[1])
local holder = ARGV[2]
local configured = tonumber(ARGV[3])
local every = tonumber(ARGV[6])
redis.call('SADD', KEYS[5], ARGV[5])
local function refill()
  return fill(KEYS[1], KEYS[2], KEYS[4], configured, now, KEYS[6], KEYS[7])
end
local verdict, wait = pass(KEYS[8], holder, now, every)
if verdict == 'wait' then
  local had = redis.call('ZREM', KEYS[1], holder)
  redis.call('ZREM', KEYS[2], holder)
  redis.call('ZADD', KEYS[9], 'NX', redis.call('INCR', KEYS[3]), holder)
  local others = {}
  if had == 1 then others = refill() end
  return {0, 0, others, 'model', wait}
end
redis.call('ZREM', KEYS[9], holder)
local stop = paused_by(KEYS[6], KEYS[7])
if stop then
  local why = (stop == KEYS[6]) and 'held' or 'breaker'
  verdict, wait = pass(stop, holder, now, every)
  if verdict == 'wait' then
    if redis.call('ZSCORE', KEYS[1], holder) then
      to_front(KEYS[1], KEYS[2], KEYS[3], holder)
    elseif not redis.call('ZSCORE', KEYS[2], holder) then
      redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[3]), holder)
    end
    return {0, redis.call('ZRANK', KEYS[2], holder) + 1, {}, why, wait}
  end
  -- The probe: a free slot, else the head of the line until one frees (fill grants it).
  if redis.call('ZSCORE', KEYS[1], holder) then return {1, 0, {}, 'probe', 0} end
  if effective(KEYS[4], configured) - redis.call('ZCARD', KEYS[1]) > 0 then
    redis.call('ZREM', KEYS[2], holder)
    redis.call('ZADD', KEYS[1], fmt(now), holder)
    return {1, 0, {}, 'probe', 0}
  end
  to_front(KEYS[1], KEYS[2], KEYS[3], holder)
  return {0, 1, {}, 'probe', 0}
end
if redis.call('ZSCORE', KEYS[1], holder) then
  return {1, 0, {}, '', 0}
end
local was_waiting = redis.call('ZSCORE', KEYS[2], holder)
if not was_waiting then
  redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[3]), holder)
end
-- Waiters ahead of this holder get free slots first: arrival order is kept.
local granted = refill()
local others, mine = {}, 0
for _, id in ipairs(granted) do
  if id == holder then mine = 1 else others[#others + 1] = id end
end
if mine == 1 then return {1, 0, others, '', 0} end
if ARGV[4] == '0' and not was_waiting then
  redis.call('ZREM', KEYS[2], holder)
  return {0, 0, others, '', 0}
end
return {0, redis.call('ZRANK', KEYS[2], holder) + 1, others, '', 0}
"""
)

# KEYS: holders line adaptive hold breaker; ARGV: now holder-or-empty configured
_RELEASE = (
    LUA_PRELUDE
    + _FILL
    + """
local now = clock(ARGV[1])
if ARGV[2] ~= '' then
  redis.call('ZREM', KEYS[1], ARGV[2])
  redis.call('ZREM', KEYS[2], ARGV[2])
end
return fill(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[3]), now, KEYS[4], KEYS[5])
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
_PUSH_FRONT = (
    LUA_PRELUDE
    + _FILL
    + """
to_front(KEYS[1], KEYS[2], KEYS[3], ARGV[1])
return 1
"""
)


@dataclass(frozen=True)
class Acquire:
    """Outcome of :meth:`SlotQueue.acquire`.

    ``position`` is the place in line when waiting (1 = next), ``None`` otherwise.
    ``also_granted`` names waiters ahead of this holder that the call moved into free slots;
    the caller nudges them just as it does for the ids :meth:`SlotQueue.release` returns.
    ``paused`` says why the line does not move for this holder: ``held`` (an account hold
    on the key), ``breaker`` (its provider is down) or ``model`` (the key may not use the
    holder's model: it waits off the line for ``wait`` seconds). ``probe`` is True when
    the holder is the one job that may try a paused line.
    """

    granted: bool
    position: int | None = None
    also_granted: tuple[str, ...] = ()
    paused: str = ""
    probe: bool = False
    wait: float = 0.0


def _holder(holder: str) -> str:
    if not holder:
        raise ValueError("holder id must not be empty")
    return holder


def _seconds(wait_us: int, forever: float) -> float:
    """A script's wait in seconds; -1 (an operator's pause: no probe) waits ``forever``."""
    return forever if wait_us < 0 else wait_us / 1_000_000


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

    def acquire(
        self,
        alias: str,
        holder: str,
        *,
        limit: int,
        wait: bool = True,
        model: str = "",
        breaker: str = "",
        probe_every: float = 300.0,
    ) -> Acquire:
        """Take a slot, or join the key's line; re-taking a held slot changes nothing.

        Waiters ahead get free slots first (see :attr:`Acquire.also_granted`). A holder
        already in line keeps its place. With ``wait=False`` a holder not yet in line is
        not added to it. A paused line (an account hold on the key, the open ``breaker``
        of its provider) grants only its probe; a holder whose ``model`` the key may not
        use waits off the line (see :mod:`worker.limits.holds`).
        """
        k = self._keys(alias)
        granted, position, others, why, wait_us = self._acquire(
            keys=[k.holders, k.line, k.seq, k.adaptive, k.registry, k.hold,
                  breaker or k.hold, k.model_hold(model), k.parked(model)],
            args=[now_arg(self._clock), _holder(holder), _limit(limit), int(wait), alias,
                  round(probe_every * 1_000_000)],
        )  # fmt: skip
        also = tuple(text(o) for o in others)
        if also:
            logger.debug("key %s: slots granted to waiters %s", alias, ", ".join(also))
        why = text(why)
        return Acquire(
            granted=bool(granted),
            position=int(position) or None,
            also_granted=also,
            paused="" if why == "probe" else why,
            probe=why == "probe",
            wait=_seconds(int(wait_us), probe_every),
        )

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

    def release(self, alias: str, holder: str, *, limit: int, breaker: str = "") -> list[str]:
        """Free the holder's slot (or its place in line) and hand free slots to waiters.

        Returns the waiters that now hold a slot, for the caller to nudge. Releasing a
        slot the holder does not hold changes nothing of its own.
        """
        return self._fill(alias, _holder(holder), limit, breaker)

    def grant_waiters(self, alias: str, *, limit: int, breaker: str = "") -> list[str]:
        """Fill every free slot from the head of the line; returns the waiters granted."""
        return self._fill(alias, "", limit, breaker)

    def _fill(self, alias: str, holder: str, limit: int, breaker: str) -> list[str]:
        k = self._keys(alias)
        granted = self._release(
            keys=[k.holders, k.line, k.adaptive, k.hold, breaker or k.hold],
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
