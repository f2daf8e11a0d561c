"""The concurrency a key really has, learned from 429s: additive increase, multiplicative decrease.

Another client may share a key, so the provider can answer 429 although the fleet keeps
within the configured limit. Each 429 cuts the key's effective limit: to the key's in-flight
count when the caller knows it (a "too many tasks in progress" 429 names the provider's cap),
else by half; never below 1, and at most once per cooldown, so the burst of 429s one
overload produces counts once. Successes raise it again by one after a run of them, at most once per
cooldown, up to the configured limit. A learned limit that nothing refreshes is forgotten
after ``forget_seconds``. The state lives in Redis, so every worker applies the same limit,
and :mod:`worker.limits.semaphore` reads it inside its scripts. 429s are counted per minute
for "429s in the last hour".

While a key is quiet (:meth:`AdaptiveLimit.quiet`: after a Redis failover, or a slot the
reconciler had to take back) its 429s are counted but cut nothing: they may answer the
fleet's own miscount of slots, not the provider's cap.
"""

from __future__ import annotations

import logging

import redis

from ._common import LUA_PRELUDE, Clock, LimitKeys, check_alias, now_arg

__all__ = ["AdaptiveLimit"]

logger = logging.getLogger(__name__)

REJECTION_BUCKET_US = 60_000_000
REJECTION_BUCKETS = 60

# KEYS: adaptive rejections registry quiet; ARGV: now configured factor cooldown forget alias
# in_flight ('' when unknown). Returns {effective limit, 1 if this 429 cut it}.
_ON_RATE_LIMITED = (
    LUA_PRELUDE
    + f"""
local now = clock(ARGV[1])
redis.call('SADD', KEYS[3], ARGV[6])
ring_add(KEYS[2], now, {REJECTION_BUCKET_US}, {REJECTION_BUCKETS})
local limit = effective(KEYS[1], tonumber(ARGV[2]))
if redis.call('EXISTS', KEYS[4]) == 1 then return {{limit, 0}} end
redis.call('HSET', KEYS[1], 'ok', 0)
-- With the key's in-flight count at the refusal, the provider's cap is known: that count.
local observed = tonumber(ARGV[7])
local target, ceiling
if observed then
  target = math.max(1, observed)
  ceiling = target + 1
else
  target = math.floor(limit * tonumber(ARGV[3]))
  ceiling = limit
end
target = math.max(1, math.min(limit, target))
local cut_at = tonumber(redis.call('HGET', KEYS[1], 'cut_at'))
if cut_at and now - cut_at < tonumber(ARGV[4]) then
  -- one overload, many 429s: count once, but an observed lower cap still applies
  if observed and target < limit then
    redis.call('HSET', KEYS[1], 'limit', target, 'ceiling', ceiling)
    return {{target, 1}}
  end
  return {{limit, 0}}
end
redis.call('HSET', KEYS[1], 'limit', target, 'ceiling', ceiling, 'cut_at', fmt(now),
           'changed_at', fmt(now))
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {{target, 1}}
"""
)

# KEYS: adaptive; ARGV: now configured increase_after cooldown forget probe
# Returns {effective limit, 1 if this success raised it}. Below the level that drew the last
# 429 (the ceiling) the limit climbs one step per cooldown; reaching the ceiling again waits
# for ``probe`` of sustained success, so a key does not keep knocking on a cap it has met.
_ON_SUCCESS = (
    LUA_PRELUDE
    + """
local configured = tonumber(ARGV[2])
local learned = tonumber(redis.call('HGET', KEYS[1], 'limit'))
if not learned then return {configured, 0} end
if learned >= configured then
  redis.call('HDEL', KEYS[1], 'limit')
  return {configured, 0}
end
local ok = redis.call('HINCRBY', KEYS[1], 'ok', 1)
local now = clock(ARGV[1])
local changed = tonumber(redis.call('HGET', KEYS[1], 'changed_at'))
if ok < tonumber(ARGV[3]) or (changed and now - changed < tonumber(ARGV[4])) then
  return {learned, 0}
end
local ceiling = tonumber(redis.call('HGET', KEYS[1], 'ceiling'))
local cut_at = tonumber(redis.call('HGET', KEYS[1], 'cut_at'))
if ceiling and learned + 1 >= ceiling and cut_at and now - cut_at < tonumber(ARGV[6]) then
  return {learned, 0}
end
learned = learned + 1
if learned >= configured then
  redis.call('HDEL', KEYS[1], 'limit')
else
  redis.call('HSET', KEYS[1], 'limit', learned)
end
redis.call('HSET', KEYS[1], 'ok', 0, 'changed_at', fmt(now))
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {learned, 1}
"""
)

# KEYS: rejections; ARGV: now
_COUNT = (
    LUA_PRELUDE
    + f"""
return ring_sum(KEYS[1], clock(ARGV[1]), {REJECTION_BUCKET_US}, {REJECTION_BUCKETS})
"""
)


class AdaptiveLimit:
    """Per-key effective concurrency learned from 429s (AIMD), shared through Redis."""

    def __init__(
        self,
        redis: redis.Redis,
        *,
        prefix: str = "rd:limits",
        clock: Clock | None = None,
        decrease_factor: float = 0.5,
        cooldown_seconds: float = 5.0,
        increase_after: int = 3,
        forget_seconds: float = 3600.0,
        probe_seconds: float = 300.0,
    ) -> None:
        if not 0 < decrease_factor < 1:
            raise ValueError(f"decrease_factor must be between 0 and 1, got {decrease_factor}")
        if increase_after < 1:
            raise ValueError(f"increase_after must be at least 1, got {increase_after}")
        if forget_seconds <= 0:
            raise ValueError(f"forget_seconds must be positive, got {forget_seconds}")
        self._redis = redis
        self._prefix = prefix
        self._clock = clock
        self._factor = repr(float(decrease_factor))
        self._cooldown = str(round(cooldown_seconds * 1_000_000))
        self._increase_after = increase_after
        self._forget_ms = str(max(1, round(forget_seconds * 1000)))
        self._probe = str(round(probe_seconds * 1_000_000))
        self._on_rate_limited = redis.register_script(_ON_RATE_LIMITED)
        self._on_success = redis.register_script(_ON_SUCCESS)
        self._count = redis.register_script(_COUNT)

    def _keys(self, alias: str) -> LimitKeys:
        return LimitKeys(self._prefix, check_alias(alias))

    def effective_limit(self, alias: str, *, limit: int) -> int:
        """The limit in force: the configured one, or lower after 429s."""
        learned = self._redis.hget(self._keys(alias).adaptive, "limit")
        return limit if learned is None else min(limit, int(learned))

    def on_rate_limited(self, alias: str, *, limit: int, in_flight: int | None = None) -> int:
        """Count a 429 and cut the key's limit (once per cooldown); returns the new limit.

        ``in_flight`` is how many of the key's tasks were running at the provider when it
        refused: then the cap is known and the limit drops to it instead of halving.
        """
        k = self._keys(alias)
        effective, cut = self._on_rate_limited(
            keys=[k.adaptive, k.rejections, k.registry, k.quiet],
            args=[
                now_arg(self._clock),
                limit,
                self._factor,
                self._cooldown,
                self._forget_ms,
                alias,
                "" if in_flight is None else in_flight,
            ],
        )
        if cut:
            logger.warning("key %s: 429, effective concurrency now %d", alias, effective)
        return int(effective)

    def on_success(self, alias: str, *, limit: int) -> int:
        """Count an accepted request; after enough of them raise the limit by one."""
        k = self._keys(alias)
        effective, raised = self._on_success(
            keys=[k.adaptive],
            args=[
                now_arg(self._clock),
                limit,
                self._increase_after,
                self._cooldown,
                self._forget_ms,
                self._probe,
            ],
        )
        if raised:
            logger.info("key %s: effective concurrency raised to %d", alias, effective)
        return int(effective)

    def quiet(self, alias: str, seconds: float) -> None:
        """Let the key's 429s teach nothing for ``seconds`` (they are still counted)."""
        self._redis.set(self._keys(alias).quiet, "1", px=max(1, round(seconds * 1000)))
        logger.info("key %s: 429s teach the learned limit nothing for %.0fs", alias, seconds)

    def is_quiet(self, alias: str) -> bool:
        """Whether the key's 429s teach nothing now."""
        return bool(self._redis.exists(self._keys(alias).quiet))

    def rate_limited_last_hour(self, alias: str) -> int:
        """429s counted in the last hour (per-minute buckets)."""
        k = self._keys(alias)
        return int(self._count(keys=[k.rejections], args=[now_arg(self._clock)]))
