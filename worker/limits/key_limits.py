"""One object for every limit of every key alias: slots, line, request rate, learned limit.

``limit`` arguments are always the CONFIGURED concurrency of the alias; the scripts apply the
smaller of it and the limit the key learned from 429s. Built with ``limit_for`` and
``rate_for`` (the settings' lookups), the object finds an alias's configured limit and
request rate itself, and callers pass only the alias. Each alias has its own Redis
structures, so one key's backlog never delays another key's jobs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypedDict

import redis

from . import adaptive, rate
from ._common import LUA_PRELUDE, Clock, LimitKeys, check_alias, now_arg, registry_key, text
from .adaptive import AdaptiveLimit
from .breaker import Breakers
from .holds import AccountHolds, Hold, Lifted
from .rate import Gate, RequestRate
from .semaphore import Acquire, SlotQueue

__all__ = ["KeyLimits", "LimitSnapshot"]

# KEYS: holders line adaptive requests rejections; ARGV: now configured
_SNAPSHOT = (
    LUA_PRELUDE
    + f"""
local now = clock(ARGV[1])
return {{
  effective(KEYS[3], tonumber(ARGV[2])),
  redis.call('ZCARD', KEYS[1]),
  redis.call('ZCARD', KEYS[2]),
  ring_sum(KEYS[4], now, {rate.REQUEST_BUCKET_US}, {rate.REQUEST_BUCKETS}),
  ring_sum(KEYS[5], now, {adaptive.REJECTION_BUCKET_US}, {adaptive.REJECTION_BUCKETS}),
}}
"""
)


class LimitSnapshot(TypedDict):
    """What ``relaydance limits`` shows for one alias."""

    configured: int
    effective: int
    in_use: int
    waiting: int
    requests_last_minute: int
    rate_limited_last_hour: int
    paused: str  # why the key's line is paused (its account, a model, its provider), or ""
    paused_since: float | None


class KeyLimits:
    """Per-key concurrency slots with a waiting line, request rate and 429 learning."""

    def __init__(
        self,
        redis: redis.Redis,
        *,
        prefix: str = "rd:limits",
        clock: Clock | None = None,
        cooldown_seconds: float = 5.0,
        increase_after: int = 3,
        limit_for: Callable[[str], int] | None = None,
        rate_for: Callable[[str], float] | None = None,
        route_for: Callable[[str], str] | None = None,
        probe_every: float = 300.0,
    ) -> None:
        self._redis = redis
        self._limit_for, self._rate_for = limit_for, rate_for
        self._route_for = route_for
        self.probe_every = probe_every
        self._prefix = prefix
        self._clock = clock
        self.slots = SlotQueue(redis, prefix=prefix, clock=clock)
        self.rate = RequestRate(redis, prefix=prefix, clock=clock)
        self.accounts = AccountHolds(redis, prefix=prefix, clock=clock)
        self.breakers = Breakers(redis, prefix=prefix, clock=clock, probe_max=probe_every)
        self.adaptive = AdaptiveLimit(
            redis,
            prefix=prefix,
            clock=clock,
            cooldown_seconds=cooldown_seconds,
            increase_after=increase_after,
        )
        self._snapshot = redis.register_script(_SNAPSHOT)

    def look_up_with(
        self,
        *,
        limit_for: Callable[[str], int],
        rate_for: Callable[[str], float],
        route_for: Callable[[str], str] | None = None,
    ) -> None:
        """Find each alias's configured limit, rate and provider route with these from now
        on (the route names the breaker the alias's calls wait behind)."""
        self._limit_for, self._rate_for = limit_for, rate_for
        if route_for is not None:
            self._route_for = route_for

    def configure_pauses(self, *, probe_every: float, breaker_failures: int) -> None:
        """How often a paused key or an open breaker is probed (at most), and how many
        consecutive failed calls open a breaker."""
        self.probe_every = probe_every
        self.breakers.configure(failures=breaker_failures, probe_max=probe_every)

    def route(self, alias: str) -> str:
        """The provider route (provider and base URL) of the alias's calls."""
        return self._route_for(alias) if self._route_for is not None else "default"

    def _breaker(self, alias: str) -> str:
        return self.breakers.key(self.route(alias))

    def configured(self, alias: str, limit: int | None = None) -> int:
        """The alias's configured concurrency: ``limit`` when given, else looked up."""
        if limit is not None:
            return limit
        if self._limit_for is None:
            raise TypeError("no limit given and no limit_for lookup configured")
        return self._limit_for(alias)

    def _rate(self, alias: str, rate: float | None) -> float:
        if rate is not None:
            return rate
        if self._rate_for is None:
            raise TypeError("no rate given and no rate_for lookup configured")
        return self._rate_for(alias)

    # Concurrency slots and the waiting line --------------------------------------------------

    def acquire(
        self,
        alias: str,
        holder: str,
        *,
        limit: int | None = None,
        wait: bool = True,
        model: str = "",
    ) -> Acquire:
        """Take a slot for ``holder`` or (``wait``) join the key's line; see :class:`Acquire`.

        A paused line (an account hold, the provider's open breaker) grants its probe only;
        a holder of a held ``model`` waits off the line.
        """
        return self.slots.acquire(
            alias, holder, limit=self.configured(alias, limit), wait=wait, model=model,
            breaker=self._breaker(alias), probe_every=self.probe_every,
        )  # fmt: skip

    def take(self, alias: str, holder: str) -> bool:
        """Hold a slot for a job whose remote task is live, over the limit if need be."""
        return self.slots.take(alias, holder)

    def holders(self, alias: str) -> list[str]:
        """Every holder of a slot of the key, oldest first."""
        return self.slots.holders(alias)

    def release(self, alias: str, holder: str, *, limit: int | None = None) -> list[str]:
        """Free the holder's slot and hand free slots to the next waiters; returns them."""
        return self.slots.release(
            alias, holder, limit=self.configured(alias, limit), breaker=self._breaker(alias)
        )

    def grant_waiters(self, alias: str, *, limit: int | None = None) -> list[str]:
        """Fill every free slot from the head of the line; returns the waiters granted."""
        return self.slots.grant_waiters(
            alias, limit=self.configured(alias, limit), breaker=self._breaker(alias)
        )

    def push_front(self, alias: str, holder: str) -> None:
        """Give up the holder's slot, if any, and put it at the head of the line (a 429)."""
        self.slots.push_front(alias, holder)

    def remove_waiter(self, alias: str, holder: str) -> bool:
        """Take the holder out of the line (on cancel); True if it was waiting."""
        return self.slots.remove_waiter(alias, holder)

    def position(self, alias: str, holder: str) -> int | None:
        """The holder's place in line (1 = next), or None when not waiting."""
        return self.slots.position(alias, holder)

    def holds(self, alias: str, holder: str) -> bool:
        """Whether the holder has a slot."""
        return self.slots.holds(alias, holder)

    def in_use(self, alias: str) -> int:
        """Slots held."""
        return self.slots.in_use(alias)

    def waiting(self, alias: str) -> int:
        """Holders in line."""
        return self.slots.waiting(alias)

    # Learned limit ---------------------------------------------------------------------------

    def effective_limit(self, alias: str, *, limit: int | None = None) -> int:
        """The concurrency in force: the configured limit, or lower after 429s."""
        return self.adaptive.effective_limit(alias, limit=self.configured(alias, limit))

    def on_rate_limited(
        self,
        alias: str,
        *,
        limit: int | None = None,
        retry_after: float | None = None,
        in_flight: int | None = None,
    ) -> int:
        """Record a 429: cut the key's limit; with ``retry_after`` also pause its requests.

        Returns the new effective limit. Call it before :meth:`push_front`, so the slot the
        job gives up is not handed straight back while the key is overloaded.
        """
        if retry_after:
            self.rate.pause(alias, retry_after)
        return self.adaptive.on_rate_limited(
            alias, limit=self.configured(alias, limit), in_flight=in_flight
        )

    def on_success(self, alias: str, *, limit: int | None = None) -> int:
        """Record an accepted submit; returns the (possibly raised) effective limit.

        Slots a raise frees go to waiters at the next release or :meth:`grant_waiters`.
        """
        return self.adaptive.on_success(alias, limit=self.configured(alias, limit))

    # Request rate ----------------------------------------------------------------------------

    def throttle(self, alias: str, *, rate: float | None = None, burst: int | None = None) -> float:
        """0.0 if an HTTP request may go now (it is counted), else the seconds to defer it."""
        return self.gate(alias, rate=rate, burst=burst).wait

    def gate(
        self,
        alias: str,
        holder: str = "",
        *,
        submit: bool = False,
        model: str = "",
        rate: float | None = None,
        burst: int | None = None,
    ) -> Gate:
        """Whether a call of job ``holder`` may go now (pauses, then the request rate)."""
        return self.rate.gate(
            alias, rate=self._rate(alias, rate), burst=burst, holder=holder, submit=submit,
            model=model, breaker=self._breaker(alias), probe_every=self.probe_every,
        )  # fmt: skip

    # Pauses: account holds and the provider's breaker -------------------------------------

    def hold(
        self,
        alias: str,
        *,
        kind: str,
        reason: str,
        status: int | str = "",
        model: str | None = None,
        holder: str = "",
    ) -> tuple[bool, int]:
        """Pause the key (or its ``model``); returns (a new pause, refusals so far)."""
        return self.accounts.hold(
            alias, kind=kind, reason=reason, status=status, model=model, holder=holder,
            probe_every=self.probe_every,
        )  # fmt: skip

    def lift(self, alias: str, *, model: str | None = None, only_kind: str = "") -> Lifted:
        """Lift the key's pause (or its model's); see :meth:`AccountHolds.lift`."""
        return self.accounts.lift(alias, model=model, only_kind=only_kind)

    def paused(self, alias: str) -> list[Hold]:
        """The key's pauses: its own, then each held model's."""
        return self.accounts.holds(alias)

    def probes_due(self, alias: str) -> list[str]:
        """Jobs to nudge: a probe of the key, its provider's breaker or a model is due."""
        return self.accounts.probes_due(alias, breaker=self._breaker(alias))

    def call_failed(self, alias: str, *, reason: str, holder: str = "") -> str:
        """Count a failed call (5xx, no connection, timeout) against the alias's route."""
        return self.breakers.failed(self.route(alias), reason=reason, holder=holder)

    def call_succeeded(self, alias: str) -> float | None:
        """A call on the alias's route succeeded; since when its breaker was open, if it was."""
        return self.breakers.succeeded(self.route(alias))

    def provider_down(self, alias: str) -> bool:
        """Whether the breaker of the alias's provider is open."""
        return self.breakers.state(self.route(alias)) is not None

    def provider_unwell(self, alias: str) -> bool:
        """Whether the alias's provider failed its last calls (see :meth:`Breakers.unwell`)."""
        return self.breakers.unwell(self.route(alias))

    def outage_seconds(self, alias: str, *, start: float, end: float) -> float:
        """Seconds in [start, end] in which the alias could not ask its provider: its
        breaker open, or its key revoked (closed windows and the one still open)."""
        route = self.route(alias)
        total = self.breakers.outages(route, start=start, end=end)
        total += self.accounts.outages(alias, start=start, end=end)
        state = self.breakers.state(route)
        if state is not None:
            total += max(0.0, end - max(start, state.since))
        for hold in self.paused(alias):
            if hold.blocks_reads:
                total += max(0.0, end - max(start, hold.since))
        return min(total, max(0.0, end - start))

    # Visibility ------------------------------------------------------------------------------

    def snapshot(self, alias: str, *, limit: int | None = None) -> LimitSnapshot:
        """Configured and effective limit, slots in use, waiters, recent requests and 429s."""
        k, limit = LimitKeys(self._prefix, check_alias(alias)), self.configured(alias, limit)
        effective, in_use, waiting, requests, rejected = self._snapshot(
            keys=[k.holders, k.line, k.adaptive, k.requests, k.rejections],
            args=[now_arg(self._clock), limit],
        )
        paused, since = self.pause_summary(alias)
        return LimitSnapshot(
            configured=limit,
            effective=int(effective),
            in_use=int(in_use),
            waiting=int(waiting),
            requests_last_minute=int(requests),
            rate_limited_last_hour=int(rejected),
            paused=paused,
            paused_since=since,
        )

    def pause_summary(self, alias: str) -> tuple[str, float | None]:
        """Why the alias is paused, in one line (every hold, then its provider's breaker),
        and since when; ("", None) when nothing is paused."""
        parts: list[tuple[float, str]] = []
        for hold in self.paused(alias):
            scope = f"model {hold.model}: " if hold.model else ""
            probe = ", no probes (paused by an operator)" if hold.probe_at is None else ""
            parts.append((hold.since, f"{scope}{hold.kind}{probe}: {hold.reason}"))
        state = self.breakers.state(self.route(alias))
        if state is not None:
            parts.append((state.since, f"provider down: {state.reason}"))
        if not parts:
            return "", None
        return "; ".join(text for _, text in parts), min(since for since, _ in parts)

    def aliases_seen(self) -> list[str]:
        """Every alias that took a slot, made a request or met a 429, sorted."""
        members = self._redis.smembers(registry_key(self._prefix))
        return sorted(text(m) for m in members)
