"""The budget of a batch: reservations taken and given back atomically in Redis.

Money is counted in integer micro-dollars so that sums never drift. Before a job is
enqueued its estimated cost is reserved by a Lua script that also claims the batch item
(a compare-and-set on the item's current value), so neither two submitters nor a release
racing a claim can push the committed total past the cap. Items are claimed in line
order; the first that does not fit ends the pass, and it and every later candidate are
marked ``skipped_budget``. A job that fails (failed generations are not billed), or is
canceled before it was ever sent to the provider, gives its reservation back, exactly
once, when it is first seen final. A finished job whose provider said what it charged
(Kinovi's ``creditsUsed``) settles at that actual spend instead of its estimate: the
difference goes back (or, if it cost more, is added) and the spend is recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import redis

__all__ = ["SKIPPED_BUDGET", "Claim", "Ledger", "from_micros", "to_micros"]

SKIPPED_BUDGET = "skipped_budget"
MICROS = 1_000_000

ClaimResult = Literal["ok", "skipped", "conflict", "canceled"]

# KEYS: batch meta hash, item -> job hash. ARGV[1]: 'claim' or 'skip' (the budget is
# already exhausted), then (item, expected value, new value, cost in micros) per item.
_CLAIM = """
if redis.call('HGET', KEYS[1], 'canceled') == '1' then return {'canceled'} end
local budget = redis.call('HGET', KEYS[1], 'budget_micros')
if budget == '' then budget = false end
local over = ARGV[1] == 'skip'
local out = {}
for i = 2, #ARGV, 4 do
  local item, expect, new, cost = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local cur = redis.call('HGET', KEYS[2], item) or ''
  if cur ~= expect then
    out[#out + 1] = 'conflict'
  else
    if not over and budget and cost > 0 then
      local reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved_micros') or '0')
      if reserved + cost > tonumber(budget) then over = true end
    end
    if over then
      redis.call('HSET', KEYS[2], item, 'skipped_budget')
      out[#out + 1] = 'skipped'
    else
      if cost > 0 then redis.call('HINCRBY', KEYS[1], 'reserved_micros', cost) end
      redis.call('HSET', KEYS[2], item, new)
      out[#out + 1] = 'ok'
    end
  end
end
return out
"""

# KEYS: batch meta hash, job -> final state hash, job -> actual micros hash. ARGV: job id,
# final state, micros to give back (negative: a job that cost more than reserved), actual
# micros or ''. Records the final state once; only the first caller settles.
_SETTLE = """
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return 0 end
local back = tonumber(ARGV[3])
if back ~= 0 then redis.call('HINCRBY', KEYS[1], 'reserved_micros', -back) end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[3], ARGV[1], ARGV[4]) end
return 1
"""


def to_micros(usd: float) -> int:
    """USD as integer micro-dollars."""
    return round(usd * MICROS)


def from_micros(micros: int) -> float:
    """Integer micro-dollars as USD."""
    return micros / MICROS


@dataclass(frozen=True)
class Claim:
    """One item to claim: its expected current value, the value to set, and its cost."""

    item: int
    expect: str
    new: str
    cost_micros: int


class Ledger:
    """The atomic budget operations of batches."""

    def __init__(self, client: redis.Redis) -> None:
        self._claim = client.register_script(_CLAIM)
        self._settle = client.register_script(_SETTLE)

    def claim(
        self, meta_key: str, jobs_key: str, claims: Sequence[Claim], *, exhausted: bool = False
    ) -> list[ClaimResult]:
        """Reserve and claim items in order; the first that does not fit skips the rest.

        Returns one result per claim, or ``["canceled"]`` when the batch is canceled.
        """
        if not claims:
            return []
        args: list[str | int] = ["skip" if exhausted else "claim"]
        for claim in claims:
            args += [claim.item, claim.expect, claim.new, claim.cost_micros]
        raw = self._claim(keys=[meta_key, jobs_key], args=args)
        return [_text(value) for value in raw]  # type: ignore[misc]

    def settle(
        self,
        meta_key: str,
        final_key: str,
        job_id: str,
        state: str,
        release: int,
        *,
        spent_key: str | None = None,
        spent: int | None = None,
    ) -> bool:
        """Record a job's final state once; the first time, give back ``release`` micros
        (negative: take more) and record what the job actually ``spent``, when known."""
        keys = [meta_key, final_key, spent_key or final_key]  # never written without spent
        args: list[str | int] = [job_id, state, release, "" if spent is None else spent]
        return bool(self._settle(keys=keys, args=args))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
