"""Account holds: a key paused by what its provider's account said, until it works again.

A revoked key (401), an empty balance (Kinovi's 402, RelayDance's 403 "insufficient
balance") or a key whose API access is off (403) holds the whole key; a 403 that refuses
one model holds the key's use of that model only. A hold is a Redis hash that exists while
it lasts; every worker's scripts read it:

- the key's line stops: no waiter is granted a slot (:mod:`.semaphore`), and no
  submission leaves (the request gate in :mod:`.rate`); a revoked key also makes no reads;
- jobs of a held model wait off the line (``parked``), so they block no one else;
- every ``probe_every`` seconds one real job may try the key (the first to ask after
  ``probe_at``): its success lifts the hold at once, its refusal moves the next probe on.
  So a pause costs a handful of refusals, not one per waiting job;
- an operator's hold (``relaydance keys pause``) has no probes: only ``relaydance keys
  resume`` lifts it.

A revoked key also stops polls; the windows in which it did are kept (``outages``), so
that a job's deadline does not count time the fleet could not ask.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import cast

import redis

from ._common import LUA_PRELUDE, Clock, LimitKeys, check_alias, now_arg, text

__all__ = ["HOLD_KINDS", "AccountHolds", "Hold", "Lifted"]

logger = logging.getLogger(__name__)

# What can hold a key, strongest first: a stronger kind replaces a weaker one.
HOLD_KINDS = ("operator", "unauthorized", "key_forbidden", "insufficient_credits", "model")
OUTAGE_KEEP_US = 7 * 24 * 3600 * 1_000_000  # longer than any deadline a window can extend

# KEYS: hold held_models registry; ARGV: now kind reason status holder every_us model
# alias strength. Returns {1 if the hold is new, refusals so far}.
_HOLD = (
    LUA_PRELUDE
    + """
local now = clock(ARGV[1])
redis.call('SADD', KEYS[3], ARGV[8])
local every = tonumber(ARGV[6])
local probe_at = 0
if ARGV[2] ~= 'operator' then probe_at = now + every end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'kind', ARGV[2], 'reason', ARGV[3], 'status', ARGV[4],
             'since', fmt(now), 'last_at', fmt(now), 'refusals', 1, 'probes', 0,
             'probe', '', 'probe_at', fmt(probe_at), 'strength', ARGV[9])
  if ARGV[7] ~= '' then redis.call('SADD', KEYS[2], ARGV[7]) end
  return {1, 1}
end
local refusals = redis.call('HINCRBY', KEYS[1], 'refusals', 1)
redis.call('HSET', KEYS[1], 'last_at', fmt(now))
if tonumber(ARGV[9]) < tonumber(redis.call('HGET', KEYS[1], 'strength') or '99') then
  redis.call('HSET', KEYS[1], 'kind', ARGV[2], 'reason', ARGV[3], 'status', ARGV[4],
             'strength', ARGV[9], 'probe_at', fmt(probe_at), 'probe', '')
  return {0, refusals}
end
local kind = redis.call('HGET', KEYS[1], 'kind')
if kind ~= 'operator' then
  redis.call('HSET', KEYS[1], 'reason', ARGV[3], 'status', ARGV[4])
  if ARGV[5] ~= '' and redis.call('HGET', KEYS[1], 'probe') == ARGV[5] then
    -- the probe was refused too: the next one comes a whole interval later
    redis.call('HSET', KEYS[1], 'probe', '', 'probe_at', fmt(probe_at))
  end
end
return {0, refusals}
"""
)

# KEYS: hold held_models parked outages; ARGV: now only_kind model. Lifts the hold (unless
# ``only_kind`` is set and the hold is of another kind). Returns {lifted 0/1, kind, since,
# {parked jobs}}.
_LIFT = (
    LUA_PRELUDE
    + f"""
local now = clock(ARGV[1])
local kind = redis.call('HGET', KEYS[1], 'kind')
if not kind then return {{0, '', '0', {{}}}} end
if ARGV[2] ~= '' and kind ~= ARGV[2] then return {{0, kind, '0', {{}}}} end
local since = redis.call('HGET', KEYS[1], 'since') or fmt(now)
if kind == 'unauthorized' then
  redis.call('ZADD', KEYS[4], fmt(now), since .. ':' .. fmt(now))
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', fmt(now - {OUTAGE_KEEP_US}))
end
redis.call('DEL', KEYS[1])
local parked = {{}}
if ARGV[3] ~= '' then
  redis.call('SREM', KEYS[2], ARGV[3])
  parked = redis.call('ZRANGE', KEYS[3], 0, -1)
  redis.call('DEL', KEYS[3])
end
return {{1, kind, since, parked}}
"""
)

# KEYS: hold breaker line held_models; ARGV: now prefix-of-model-keys
# The jobs to nudge now because a probe is due: the line's head (a held key or an open
# breaker), and the first parked job of each held model.
_PROBES_DUE = (
    LUA_PRELUDE
    + """
local now = clock(ARGV[1])
local due = {}
local function ready(key)
  local at = tonumber(redis.call('HGET', key, 'probe_at')) or 0
  return at > 0 and at <= now
end
local stop = paused_by(KEYS[1], KEYS[2])
if stop and ready(stop) then
  local head = redis.call('ZRANGE', KEYS[3], 0, 0)
  if head[1] then due[#due + 1] = head[1] end
end
for _, model in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  local key = ARGV[2] .. 'hold:m:' .. model
  if redis.call('EXISTS', key) == 0 then
    redis.call('SREM', KEYS[4], model)
  elseif ready(key) then
    local first = redis.call('ZRANGE', ARGV[2] .. 'parked:m:' .. model, 0, 0)
    if first[1] then due[#due + 1] = first[1] end
  end
end
return due
"""
)


@dataclass(frozen=True)
class Hold:
    """A pause of a key (``model`` None) or of its use of one model."""

    alias: str
    model: str | None
    kind: str
    reason: str
    status: str
    since: float
    probe_at: float | None  # None: an operator's pause, which is never probed
    refusals: int
    probes: int

    @property
    def blocks_reads(self) -> bool:
        """Whether polls and downloads wait too (a revoked key cannot read its tasks)."""
        return self.kind == "unauthorized"


@dataclass(frozen=True)
class Lifted:
    """What lifting a hold found: whether there was one, its kind, and parked jobs."""

    lifted: bool
    kind: str = ""
    since: float = 0.0
    parked: tuple[str, ...] = ()


class AccountHolds:
    """Key and model holds in Redis, shared by every worker."""

    def __init__(
        self, redis: redis.Redis, *, prefix: str = "rd:limits", clock: Clock | None = None
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._clock = clock
        self._hold = redis.register_script(_HOLD)
        self._lift = redis.register_script(_LIFT)
        self._probes_due = redis.register_script(_PROBES_DUE)

    def _keys(self, alias: str) -> LimitKeys:
        return LimitKeys(self._prefix, check_alias(alias))

    def hold(
        self,
        alias: str,
        *,
        kind: str,
        reason: str,
        probe_every: float,
        status: int | str = "",
        model: str | None = None,
        holder: str = "",
    ) -> tuple[bool, int]:
        """Hold the key (or its ``model``) for ``kind``; returns (new, refusals so far).

        ``holder`` is the job that met the refusal: if it was the hold's probe, the next
        probe comes a whole ``probe_every`` later. A stronger kind replaces a weaker one.
        """
        if kind not in HOLD_KINDS:
            raise ValueError(f"unknown hold kind {kind!r}")
        k = self._keys(alias)
        key = k.model_hold(model) if model else k.hold
        new, refusals = self._hold(
            keys=[key, k.held_models, k.registry],
            args=[
                now_arg(self._clock), kind, reason[:500], str(status), holder,
                round(probe_every * 1_000_000), model or "", alias, HOLD_KINDS.index(kind),
            ],
        )  # fmt: skip
        return bool(new), int(refusals)

    def lift(self, alias: str, *, model: str | None = None, only_kind: str = "") -> Lifted:
        """Lift the key's hold (or its ``model``'s): returns what was held and the jobs
        parked behind a model hold, for the caller to resume."""
        k = self._keys(alias)
        key = k.model_hold(model) if model else k.hold
        lifted, kind, since, parked = self._lift(
            keys=[key, k.held_models, k.parked(model or ""), k.outages],
            args=[now_arg(self._clock), only_kind, model or ""],
        )
        return Lifted(
            lifted=bool(lifted),
            kind=text(kind),
            since=int(since) / 1_000_000,
            parked=tuple(text(p) for p in parked),
        )

    def holds(self, alias: str) -> list[Hold]:
        """The key's hold, if any, then each held model's, by model."""
        k = self._keys(alias)
        models = sorted(text(m) for m in self._redis.smembers(k.held_models))
        keys = [(None, k.hold)] + [(m, k.model_hold(m)) for m in models]
        pipe = self._redis.pipeline(transaction=False)
        for _, key in keys:
            pipe.hgetall(key)
        found = []
        for (model, _), raw in zip(keys, pipe.execute(), strict=True):
            if raw:
                found.append(_hold_from(alias, model, {text(a): text(b) for a, b in raw.items()}))
        return found

    def probes_due(self, alias: str, *, breaker: str) -> list[str]:
        """Jobs to nudge because a probe of the key, its breaker or a held model is due."""
        k = self._keys(alias)
        due = self._probes_due(
            keys=[k.hold, breaker, k.line, k.held_models],
            args=[now_arg(self._clock), k.hold.removesuffix("hold")],
        )
        return [text(d) for d in due]

    def outages(self, alias: str, *, start: float, end: float) -> float:
        """Seconds between ``start`` and ``end`` in which a revoked key stopped every call."""
        return _overlap(self._redis, self._keys(alias).outages, start, end)


def _hold_from(alias: str, model: str | None, raw: dict[str, str]) -> Hold:
    probe_at = int(raw.get("probe_at") or 0)
    return Hold(
        alias=alias,
        model=model,
        kind=raw.get("kind", ""),
        reason=raw.get("reason", ""),
        status=raw.get("status", ""),
        since=int(raw.get("since") or 0) / 1_000_000,
        probe_at=probe_at / 1_000_000 if probe_at > 0 else None,
        refusals=int(raw.get("refusals") or 0),
        probes=int(raw.get("probes") or 0),
    )


def _overlap(client: redis.Redis, key: str, start: float, end: float) -> float:
    """Seconds of the windows (members ``since:until``, microseconds) within [start, end]."""
    total = 0.0
    members = cast(list[bytes | str], client.zrangebyscore(key, round(start * 1e6), "+inf"))
    for member in members:
        since, _, until = text(member).partition(":")
        lo, hi = max(start, int(since) / 1_000_000), min(end, int(until) / 1_000_000)
        total += max(0.0, hi - lo)
    return total
