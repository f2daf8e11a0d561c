"""Properties of the per-key slots against a real redis-server.

* A model-based test steps a clock by hand and checks every answer of the slots and the
  line against a plain Python model, under random sequences of acquire, take, release,
  push-front, cancel, 429s and the passing of time (which must change nothing: no timer
  takes a slot).
* Concurrent tests run holders in threads and in processes: slots in use never exceed the
  limit, a live holder never loses its slot however long it holds it, and the slot of a
  holder that dies is freed by the reconciler (here a loop that releases dead holders, as
  worker.job.slots does for jobs that no longer need their slot), never by a timer.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import redis
from hypothesis import HealthCheck, given, settings
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


# Concurrent holders, with the Redis server's clock ------------------------------------------------

TICK = 0.02  # seconds: a holder's unit of work, and how often waiters look again


@dataclass(frozen=True)
class Job:
    """One holder's life: how many ticks it holds the slot for, and whether it dies."""

    renewals: int
    dies: bool = False


@dataclass
class Board:
    """What the holders report: how many believe they hold a slot, and what went wrong."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    inside: int = 0
    peak: int = 0
    problems: list[str] = field(default_factory=list)
    nudges: dict[str, threading.Event] = field(default_factory=dict)

    def enter(self, limit: int) -> None:
        with self.lock:
            self.inside += 1
            self.peak = max(self.peak, self.inside)
            if self.inside > limit:
                self.problems.append(f"{self.inside} holders for {limit} slots")

    def leave(self) -> None:
        with self.lock:
            self.inside -= 1

    def nudge(self, jobs: list[str] | tuple[str, ...]) -> None:
        with self.lock:
            for job in jobs:
                self.nudges.setdefault(job, threading.Event()).set()

    def event(self, job: str) -> threading.Event:
        with self.lock:
            return self.nudges.setdefault(job, threading.Event())


def run_holder(
    limits: KeyLimits,
    alias: str,
    name: str,
    jobs: list[Job],
    *,
    limit: int,
    enter: Callable[[], object],
    leave: Callable[[], object],
    report: Callable[[str], object],
    nudge: Callable[[list[str] | tuple[str, ...]], None],
    wait_for_nudge: Callable[[str], None],
    die: Callable[[str], object],
) -> None:
    """Live through ``jobs`` one after another, as the submit and poll steps of a worker do."""
    deadline = time.monotonic() + 20
    for n, job in enumerate(jobs):
        holder = f"{name}-{n}"
        result = limits.acquire(alias, holder, limit=limit)
        while not result.granted:
            nudge(result.also_granted)
            if time.monotonic() > deadline:
                report(f"{holder} never got a slot")
                return
            wait_for_nudge(holder)  # a nudge, or the sweeper's next round
            result = limits.acquire(alias, holder, limit=limit)
        nudge(result.also_granted)
        enter()
        for _ in range(job.renewals):
            time.sleep(TICK)
            if not limits.holds(alias, holder):
                report(f"{holder} lost its slot while it was live")
        leave()
        if job.dies:  # a dead holder just stops; the reconciler frees its slot
            die(holder)
        else:
            nudge(limits.release(alias, holder, limit=limit))


def reconcile_dead(
    limits: KeyLimits, alias: str, dead: Callable[[], set[str]], limit: int
) -> list[str]:
    """Free the slots of dead holders, as the reconciler does for jobs that need none."""
    granted: list[str] = []
    for holder in limits.holders(alias):
        if holder in dead():
            granted += limits.release(alias, holder, limit=limit)
    return granted


jobs_strategy = st.lists(
    st.builds(Job, renewals=st.integers(0, 3), dies=st.just(False)), min_size=1, max_size=2
)


@st.composite
def plans(draw: st.DrawFn) -> tuple[int, list[list[Job]]]:
    """A limit and each holder's jobs, with at most one holder that dies."""
    limit = draw(st.integers(1, 3))
    holders = draw(st.lists(jobs_strategy, min_size=2, max_size=4))
    victim = draw(st.integers(-1, len(holders) - 1))
    if victim >= 0:
        holders[victim] = [*holders[victim][:-1], Job(holders[victim][-1].renewals, dies=True)]
    return limit, holders


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=plans())
def test_threads_never_exceed_the_limit_and_live_holders_keep_their_slots(
    redis_server: RedisServer, plan: tuple[int, list[list[Job]]]
) -> None:
    limit, holders = plan
    alias = f"t{uuid.uuid4().hex[:12]}"
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    limits = KeyLimits(client)
    board = Board()
    dead: set[str] = set()

    def wait_for_nudge(holder: str) -> None:
        event = board.event(holder)
        event.wait(TICK)
        event.clear()

    threads = [
        threading.Thread(
            target=run_holder,
            args=(limits, alias, f"h{i}", jobs),
            kwargs={
                "limit": limit,
                "enter": lambda: board.enter(limit),
                "leave": board.leave,
                "report": board.problems.append,
                "nudge": board.nudge,
                "wait_for_nudge": wait_for_nudge,
                "die": dead.add,
            },
        )
        for i, jobs in enumerate(holders)
    ]
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
            board.nudge(reconcile_dead(limits, alias, lambda: set(dead), limit))
            time.sleep(TICK)
        for thread in threads:
            thread.join(timeout=1)
        assert not any(thread.is_alive() for thread in threads)
        assert board.problems == []
        assert 1 <= board.peak <= limit
        assert limits.waiting(alias) == 0
        assert set(limits.holders(alias)) <= dead  # only the dead still hold, until reconciled
    finally:
        client.close()


# Processes: each with its own client, sharing only the Redis server ---------------------------


def process_main(url: str, alias: str, name: str, jobs: list[Job], limit: int) -> None:
    """A worker process: holders report through Redis, the only thing processes share."""
    client = redis.Redis.from_url(url, decode_responses=True)
    limits = KeyLimits(client)
    inside, problems = f"test:{alias}:inside", f"test:{alias}:problems"

    def enter() -> None:
        now_inside = client.incr(inside)
        if now_inside > limit:
            client.rpush(problems, f"{now_inside} holders for {limit} slots")

    run_holder(
        limits,
        alias,
        name,
        jobs,
        limit=limit,
        enter=enter,
        leave=lambda: client.decr(inside),
        report=lambda problem: client.rpush(problems, problem),
        nudge=lambda jobs: None,  # no nudges across processes: waiters poll, like the sweeper
        wait_for_nudge=lambda holder: time.sleep(TICK),
        die=lambda holder: client.sadd(f"test:{alias}:dead", holder),
    )
    client.close()


@pytest.mark.parametrize("processes", [3])
@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=plans())
def test_processes_never_exceed_the_limit_and_live_holders_keep_their_slots(
    redis_server: RedisServer, processes: int, plan: tuple[int, list[list[Job]]]
) -> None:
    limit, holders = plan
    holders = (holders * processes)[:processes]
    alias = f"p{uuid.uuid4().hex[:12]}"
    # Not plain fork: children of this process would inherit its broker connections.
    context = multiprocessing.get_context("forkserver")
    workers = [
        context.Process(target=process_main, args=(redis_server.url, alias, f"p{i}", jobs, limit))
        for i, jobs in enumerate(holders)
    ]
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    limits = KeyLimits(client)
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 30
    while any(w.is_alive() for w in workers) and time.monotonic() < deadline:
        reconcile_dead(limits, alias, lambda: set(client.smembers(f"test:{alias}:dead")), limit)
        time.sleep(TICK)
    for worker in workers:
        worker.join(timeout=1)
    try:
        assert [worker.exitcode for worker in workers] == [0] * processes
        assert client.lrange(f"test:{alias}:problems", 0, -1) == []
        assert KeyLimits(client).waiting(alias) == 0
    finally:
        client.close()
