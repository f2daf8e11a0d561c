"""What the limit scripts share: Redis key names, the Lua prelude, the clock and decoding.

Every key of one alias carries the alias as a Redis hash tag (``rd:limits:{alias}:...``),
so a script touches the keys of one alias only (and the small set that registers aliases),
and one key's traffic never shares a structure with another's. Times inside the scripts
are integer microseconds from the Redis server's clock (``TIME``), one clock for every
worker host (Redis 5+ replicates scripts by their effects, so reading ``TIME`` before
writing is allowed); a caller-supplied clock replaces it where a test or a simulation needs
to step time by hand.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, overload

__all__ = [
    "LUA_PRELUDE",
    "Clock",
    "LimitKeys",
    "breaker_key",
    "check_alias",
    "check_model",
    "now_arg",
    "registry_key",
    "text",
]

Clock = Callable[[], float]
"""Returns the time in seconds; used instead of the Redis server's clock when given."""

_ALIAS = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_MODEL = re.compile(r"^[A-Za-z0-9_.:-]{0,100}$")

# Lua 5.1 inside Redis: numbers are doubles, exact for integers below 2**53, so microseconds
# since the epoch (~1.7e15) are exact. Numbers are written back with %.0f because tostring()
# would print 1.7e+15 and lose digits.
LUA_PRELUDE = """
local function clock(arg)
  if arg ~= nil and arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function fmt(n) return string.format('%.0f', n) end

-- The configured limit, or the lower one the key learned from 429s.
local function effective(adaptive_key, configured)
  local learned = tonumber(redis.call('HGET', adaptive_key, 'limit'))
  if learned and learned < configured then return learned end
  return configured
end

-- A ring of `slots` counters, each `width` microseconds wide: bounded memory, O(1) writes.
local function ring_add(key, now, width, slots)
  local epoch = math.floor(now / width)
  local i = epoch % slots
  if tonumber(redis.call('HGET', key, 'e' .. i)) == epoch then
    redis.call('HINCRBY', key, 'n' .. i, 1)
  else
    redis.call('HSET', key, 'e' .. i, fmt(epoch), 'n' .. i, 1)
  end
  redis.call('PEXPIRE', key, math.ceil(width * slots / 1000))
end

-- A paused line (an account hold, or an open breaker: a hash that exists while it lasts),
-- which the key's slots and requests wait behind. The first caller after `probe_at` becomes
-- its probe and passes; everyone else waits. An operator's hold has no probe_at: no probes.
-- Returns 'go' (not paused), 'probe' (`holder` is the probe, or has just become it) or
-- 'wait', with the microseconds to wait (-1: until someone lifts the pause).
local function pass(key, holder, now, every)
  if redis.call('EXISTS', key) == 0 then return 'go', 0 end
  if holder ~= '' and redis.call('HGET', key, 'probe') == holder then return 'probe', 0 end
  local at = tonumber(redis.call('HGET', key, 'probe_at')) or 0
  if at <= 0 then return 'wait', -1 end
  if now < at or holder == '' then return 'wait', math.max(at - now, 0) end
  local wait = tonumber(redis.call('HGET', key, 'probe_wait')) or every
  redis.call('HSET', key, 'probe', holder, 'probe_at', fmt(now + wait), 'probed_at', fmt(now))
  redis.call('HINCRBY', key, 'probes', 1)
  return 'probe', 0
end

-- The pause a key's line waits behind: its account hold, else its provider's open breaker.
local function paused_by(hold, breaker)
  if redis.call('EXISTS', hold) == 1 then return hold end
  if redis.call('EXISTS', breaker) == 1 then return breaker end
  return nil
end

-- The sum of the counters of the last `slots` buckets, the current one included.
local function ring_sum(key, now, width, slots)
  local epoch = math.floor(now / width)
  local flat = redis.call('HGETALL', key)
  local fields = {}
  for j = 1, #flat, 2 do fields[flat[j]] = flat[j + 1] end
  local total = 0
  for i = 0, slots - 1 do
    local e = tonumber(fields['e' .. i])
    if e and e > epoch - slots and e <= epoch then total = total + tonumber(fields['n' .. i]) end
  end
  return total
end
"""


class _Key:
    """One key of an alias's limits, named by attribute: ``keys.holders`` is its name."""

    def __init__(self, name: str, doc: str) -> None:
        self.name, self.__doc__ = name, doc

    @overload
    def __get__(self, keys: None, owner: type[Any]) -> _Key: ...
    @overload
    def __get__(self, keys: LimitKeys, owner: type[Any]) -> str: ...
    def __get__(self, keys: LimitKeys | None, owner: type[Any]) -> _Key | str:
        return self if keys is None else keys._key(self.name)


@dataclass(frozen=True)
class LimitKeys:
    """Names of the Redis keys that hold one alias's limits."""

    prefix: str
    alias: str

    def _key(self, name: str) -> str:
        return f"{self.prefix}:{{{self.alias}}}:{name}"

    holders = _Key("holders", "Sorted set: holder id -> when it took the slot (microseconds).")
    line = _Key("line", "Sorted set: waiting holder id -> place in line (lower goes first).")
    seq = _Key("seq", "Counter that numbers arrivals at the tail of the line.")
    adaptive = _Key(
        "adaptive", "Hash: learned limit, time of the last cut and change, successes since."
    )
    tat = _Key("tat", "GCRA theoretical arrival time of the next request (microseconds).")
    pause = _Key("pause", "Time before which no request may go (a provider's Retry-After).")
    requests = _Key("requests", "Ring of per-second request counters (last minute).")
    rejections = _Key("rejections", "Ring of per-minute 429 counters (last hour).")
    quiet = _Key(
        "quiet",
        "Present while the key's 429s teach its learned limit nothing (a new Redis "
        "primary, or slots the reconciler had to repair, may have miscounted them).",
    )
    hold = _Key(
        "hold",
        "Hash, present while the key is paused by an account fault or an operator: kind, "
        "reason, since, probe_at and probe (the one job that may try the key).",
    )
    held_models = _Key("held-models", "Set of the models with a model_hold.")
    outages = _Key(
        "outages", "Sorted set of the windows in which the key could make no call (a revoked key)."
    )

    def model_hold(self, model: str) -> str:
        """Hash, present while the key may not use ``model`` (a 403): as :attr:`hold`."""
        return self._key(f"hold:m:{check_model(model)}")

    def parked(self, model: str) -> str:
        """Sorted set: jobs of a held ``model``, waiting off the line, in arrival order."""
        return self._key(f"parked:m:{check_model(model)}")

    @property
    def registry(self) -> str:
        """Set of every alias that used the limits (for ``relaydance limits``)."""
        return registry_key(self.prefix)


def registry_key(prefix: str) -> str:
    """The set of every alias that used the limits under ``prefix``."""
    return f"{prefix}:aliases"


def check_model(model: str) -> str:
    """The model id, if it is safe inside a key name; else ValueError."""
    if not _MODEL.match(model):
        raise ValueError("model id must be 0-100 letters, digits, '.', '-', '_' or ':'")
    return model


def breaker_key(prefix: str, route: str) -> str:
    """The hash that exists while the breaker of a provider ``route`` is open."""
    return f"{prefix}:breaker:{{{check_alias(route)}}}:open"


def check_alias(alias: str) -> str:
    """The alias, if it is safe inside a key name; else ValueError."""
    if not _ALIAS.match(alias):
        # Not echoed: a string that is no alias may be a key.
        raise ValueError("key alias must be 1-100 letters, digits, '.', '-' or '_'")
    return alias


def now_arg(clock: Clock | None) -> str:
    """The script argument for "now": empty means the Redis server's clock."""
    return "" if clock is None else str(round(clock() * 1_000_000))


def text(value: bytes | str) -> str:
    """A reply value as text, whether or not the client decodes responses."""
    return value.decode() if isinstance(value, bytes) else value
