"""Properties of the per-key slots against a real redis-server: a model-based test.

It steps a clock by hand and checks every answer of the slots and the line against a plain
Python model, under random sequences of acquire, take, release, push-front, cancel, 429s and
the passing of time (which must change nothing: no timer takes a slot). Concurrent holders,
in threads and in processes, are in test_limits_concurrency.py.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import redis
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from worker.infra.redis_server import RedisServer
from worker.limits import Acquire, KeyLimits

ALIAS = "k"
JOBS = [f"j{n}" for n in range(6)]


# Model-based test, with a hand-stepped clock ----------------------------------------------------


@dataclass
class SlotsModel:
    """What the slots and the line of one key should hold."""

    holders: set[str] = field(default_factory=set)
    line: list[str] = field(default_factory=list)

    def fill(self, limit: int) -> list[str]:
        free = max(0, limit - len(self.holders))
        granted, self.line = self.line[:free], self.line[free:]
        self.holders.update(granted)
        return granted


class SlotsMachine(RuleBasedStateMachine):
    """Random operations on one key's slots, each answer checked against :class:`SlotsModel`."""

    redis_url = ""

    def __init__(self) -> None:
        super().__init__()
        self.client = redis.Redis.from_url(self.redis_url, decode_responses=True)
        self.now = 1_700_000_000.0
        self.limits = KeyLimits(
            self.client,
            prefix=f"prop:{uuid.uuid4().hex}",
            clock=lambda: self.now,
            cooldown_seconds=5.0,
            increase_after=2,
        )
        self.model = SlotsModel()
        self.configured = 1

    def teardown(self) -> None:
        self.client.close()

    def effective(self) -> int:
        return self.limits.effective_limit(ALIAS, limit=self.configured)

    @initialize(limit=st.integers(1, 3))
    def configure(self, limit: int) -> None:
        self.configured = limit

    @rule(job=st.sampled_from(JOBS), wait=st.booleans())
    def acquire(self, job: str, wait: bool) -> None:
        m = self.model
        limit = self.effective()
        in_use_before = self.limits.in_use(ALIAS)
        result = self.limits.acquire(ALIAS, job, limit=self.configured, wait=wait)
        if job in m.holders:
            assert result == Acquire(granted=True)
            return
        was_waiting = job in m.line
        if not was_waiting:
            m.line.append(job)
        granted = m.fill(limit)
        others = tuple(g for g in granted if g != job)
        if job in granted:
            expected = Acquire(granted=True, also_granted=others)
        elif not wait and not was_waiting:
            m.line.remove(job)
            expected = Acquire(granted=False, also_granted=others)
        else:
            expected = Acquire(granted=False, position=m.line.index(job) + 1, also_granted=others)
        assert result == expected
        if granted:  # a slot is only ever granted under the effective limit
            assert in_use_before < limit

    @rule(job=st.sampled_from(JOBS))
    def take(self, job: str) -> None:
        # A job whose task is live at the provider: held whatever the limit.
        assert self.limits.take(ALIAS, job) is (job not in self.model.holders)
        self.model.holders.add(job)
        if job in self.model.line:
            self.model.line.remove(job)

    @rule(job=st.sampled_from(JOBS))
    def release(self, job: str) -> None:
        limit = self.effective()
        granted = self.limits.release(ALIAS, job, limit=self.configured)
        self.model.holders.discard(job)
        if job in self.model.line:
            self.model.line.remove(job)
        assert granted == self.model.fill(limit)

    @rule()
    def grant_waiters(self) -> None:
        limit = self.effective()
        granted = self.limits.grant_waiters(ALIAS, limit=self.configured)
        assert granted == self.model.fill(limit)

    @rule(job=st.sampled_from(JOBS))
    def push_front(self, job: str) -> None:
        self.limits.push_front(ALIAS, job)
        self.model.holders.discard(job)
        if job in self.model.line:
            self.model.line.remove(job)
        self.model.line.insert(0, job)

    @rule(job=st.sampled_from(JOBS))
    def remove_waiter(self, job: str) -> None:
        was_waiting = job in self.model.line
        assert self.limits.remove_waiter(ALIAS, job) is was_waiting
        if was_waiting:
            self.model.line.remove(job)

    @rule(seconds=st.sampled_from([0.5, 6.0, 90.0, 3600.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds  # nothing may change: no timer takes a slot

    @rule()
    def provider_says_429(self) -> None:
        assert 1 <= self.limits.on_rate_limited(ALIAS, limit=self.configured) <= self.configured

    @rule()
    def provider_accepts(self) -> None:
        assert 1 <= self.limits.on_success(ALIAS, limit=self.configured) <= self.configured

    @invariant()
    def slots_match_the_model(self) -> None:
        held = sorted(self.model.holders)
        assert self.limits.in_use(ALIAS) == len(held)
        assert [h for h in JOBS if self.limits.holds(ALIAS, h)] == held
        assert sorted(self.limits.holders(ALIAS)) == held

    @invariant()
    def the_line_matches_the_model(self) -> None:
        assert self.limits.waiting(ALIAS) == len(self.model.line)
        for place, job in enumerate(self.model.line, start=1):
            assert self.limits.position(ALIAS, job) == place


def test_slots_and_line_behave_like_the_model(redis_server: RedisServer) -> None:
    SlotsMachine.redis_url = redis_server.url
    run_state_machine_as_test(
        SlotsMachine,
        settings=settings(max_examples=50, stateful_step_count=30, deadline=None),
    )
