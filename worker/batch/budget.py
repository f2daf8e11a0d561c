"""The budget of a batch: reservations taken and given back atomically in Redis.

Money is counted in integer micro-dollars so that sums never drift. Before a job is
enqueued its estimated cost is reserved by a Lua script that also claims the batch item
(a compare-and-set on the item's current value), so neither two submitters nor a release
racing a claim can push the committed total past the cap. Items are claimed in line
order; the first that does not fit ends the pass, and it and every later candidate are
marked ``skipped_budget``. Money follows billing: a job gives its reservation back,
exactly once when it is first seen final, only when the provider cannot have billed it
(it never reached the provider, a 4xx refused it, or its generation failed). A job that
was billed and then failed (its download refused, its url expired, its deadline passed)
keeps its reservation, and so does one whose submission is in doubt, so that a resume
never takes the spend past the budget. A billed job whose provider said what it charged
(Kinovi's ``creditsUsed``) counts that actual spend instead of its estimate, and its
reservation is trued up to it: the difference goes back, or is added if it cost more.

A storyboard's chain (a still and the clips made from it, consecutive in claim order) is
reserved whole or not at all: its first claim is checked against the budget with the
chain's whole cost (:func:`chain_checks`), so a still is never made for a clip the budget
would then refuse.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import redis

from worker.infra.durability import Durability
from worker.job.record import Billing

__all__ = [
    "SKIPPED_BUDGET",
    "Claim",
    "Ledger",
    "Settlement",
    "chain_checks",
    "from_micros",
    "settlement",
    "to_micros",
]

SKIPPED_BUDGET = "skipped_budget"
MICROS = 1_000_000

ClaimResult = Literal["ok", "skipped", "conflict", "canceled"]

# KEYS: batch meta hash, item -> job hash. ARGV[1]: 'claim' or 'skip' (the budget is
# already exhausted), then (item, expected value, new value, cost in micros, micros the
# budget must have room for: the cost, or a chain's whole cost on its first item) per item.
_CLAIM = """
if redis.call('HGET', KEYS[1], 'canceled') == '1' then return {'canceled'} end
local budget = redis.call('HGET', KEYS[1], 'budget_micros')
if budget == '' then budget = false end
local over = ARGV[1] == 'skip'
local out = {}
for i = 2, #ARGV, 5 do
  local item, expect, new, cost = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local room = tonumber(ARGV[i + 4])
  local cur = redis.call('HGET', KEYS[2], item) or ''
  if cur ~= expect then
    out[#out + 1] = 'conflict'
  else
    if not over and budget and room > 0 then
      local reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved_micros') or '0')
      if reserved + room > tonumber(budget) then over = true end
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

# KEYS: batch meta hash. ARGV: cost in micros. Reserves it if the budget has room.
_RESERVE = """
local cost = tonumber(ARGV[1])
local budget = redis.call('HGET', KEYS[1], 'budget_micros')
if budget and budget ~= '' then
  local reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved_micros') or '0')
  if reserved + cost > tonumber(budget) then return 0 end
end
redis.call('HINCRBY', KEYS[1], 'reserved_micros', cost)
return 1
"""

# KEYS: batch meta hash, job -> final state hash. ARGV: job id, final state, micros to
# give back (negative: a job that cost more than reserved), micros billed, micros possibly
# billed. Records the final state once; only the first caller releases and counts the spend.
_SETTLE = """
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return 0 end
local back, spent, unknown = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
if back ~= 0 then redis.call('HINCRBY', KEYS[1], 'reserved_micros', -back) end
if spent > 0 then redis.call('HINCRBY', KEYS[1], 'spent_micros', spent) end
if unknown > 0 then redis.call('HINCRBY', KEYS[1], 'unknown_micros', unknown) end
return 1
"""


@dataclass(frozen=True)
class Settlement:
    """The money of one job: what to give back, what was billed, what may have been."""

    release: int = 0
    spent: int = 0
    unknown: int = 0


def settlement(
    cost_micros: int,
    billing: str | None,
    orphans: int = 0,
    *,
    actual_micros: int | None = None,
    duplicates: int = 0,
) -> Settlement:
    """The money of a job whose line reserved ``cost_micros`` per submission, by its
    ``billing``, its ``orphans`` (earlier submissions that may have made a billed task;
    each reserved its own cost when it was resubmitted) and its ``duplicates`` (those the
    provider showed were billed).

    ``actual_micros`` is what the provider said the job's own task cost, when it says: a
    billed job then spends that, and its reservation is trued up to it. Whatever the order
    of events, billed plus possibly billed never exceeds what the line reserved, except by
    the provider charging more than the estimate.
    """
    paid = Billing(billing or Billing.NONE.value)
    confirmed = min(max(duplicates, 0), orphans)
    own = 0
    if paid is Billing.BILLED:
        own = cost_micros if actual_micros is None else actual_micros
    spent = own + cost_micros * confirmed
    doubt = 1 if paid in (Billing.PENDING, Billing.UNKNOWN) else 0
    unknown = cost_micros * (orphans - confirmed + doubt)
    reserved = cost_micros * (1 + orphans)
    return Settlement(release=reserved - spent - unknown, spent=spent, unknown=unknown)


def to_micros(usd: float) -> int:
    """USD as integer micro-dollars."""
    return round(usd * MICROS)


def from_micros(micros: int) -> float:
    """Integer micro-dollars as USD."""
    return micros / MICROS


@dataclass(frozen=True)
class Claim:
    """One item to claim: its expected current value, the value to set, and its cost.

    ``check_micros`` is what the budget must have room for to admit it: its own cost when
    None, or its chain's whole cost on a chain's first claim (:func:`chain_checks`).
    """

    item: int
    expect: str
    new: str
    cost_micros: int
    check_micros: int | None = None

    @property
    def room_micros(self) -> int:
        """What the budget must have room for to admit this claim."""
        return self.cost_micros if self.check_micros is None else self.check_micros


def chain_checks(claims: Sequence[Claim], chain_of: Mapping[int, int]) -> list[Claim]:
    """The claims with each chain's first one checked for the chain's whole cost.

    ``chain_of`` maps an item to its chain (items missing from it are chains of their own);
    a chain's claims must be consecutive, as a plan numbers them. Its later claims keep
    their own cost as their check: once the first fits, they fit too.
    """
    out = list(claims)
    start = 0
    while start < len(out):
        chain = chain_of.get(out[start].item, -1 - start)
        end = start + 1
        while end < len(out) and chain_of.get(out[end].item, -1 - end) == chain:
            end += 1
        whole = sum(claim.cost_micros for claim in out[start:end])
        if end - start > 1:
            out[start] = dataclasses.replace(out[start], check_micros=whole)
        start = end
    return out


class Ledger:
    """The atomic budget operations of batches."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._claim = client.register_script(_CLAIM)
        self._settle = client.register_script(_SETTLE)
        self._reserve = client.register_script(_RESERVE)

    def reserve(self, meta_key: str, cost_micros: int) -> bool:
        """Reserve ``cost_micros`` more if the batch's budget has room; whether it did."""
        return bool(self._reserve(keys=[meta_key], args=[cost_micros]))

    def unreserve(self, meta_key: str, cost_micros: int) -> None:
        """Give back a reservation that was not used."""
        self._redis.hincrby(meta_key, "reserved_micros", -cost_micros)

    def claim(
        self,
        meta_key: str,
        jobs_key: str,
        claims: Sequence[Claim],
        *,
        exhausted: bool = False,
        durability: Durability | None = None,
    ) -> list[ClaimResult]:
        """Reserve and claim items in order; the first that does not fit skips the rest.

        Returns one result per claim, or ``["canceled"]`` when the batch is canceled. With
        ``durability``, the reservation waits for the Redis replicas before any job is made
        for it, and raises :class:`~worker.errors.NotDurable` when too few confirm in time.
        """
        if not claims:
            return []
        args: list[str | int] = ["skip" if exhausted else "claim"]
        for claim in claims:
            args += [claim.item, claim.expect, claim.new, claim.cost_micros, claim.room_micros]
        keys = [meta_key, jobs_key]
        if durability is None:
            raw = self._claim(keys=keys, args=args)
        else:
            raw, confirmed = durability.run(self._claim, keys=keys, args=args)
            if not confirmed and any(_text(value) == "ok" for value in raw):
                raise durability.refused("the budget reservation")
        return [_text(value) for value in raw]  # type: ignore[misc]

    def settle(
        self, meta_key: str, final_key: str, job_id: str, state: str, money: Settlement
    ) -> bool:
        """Record a job's final state once; the first time, give back and count its money."""
        args: list[str | int] = [job_id, state, money.release, money.spent, money.unknown]
        return bool(self._settle(keys=[meta_key, final_key], args=args))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
