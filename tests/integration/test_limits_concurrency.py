"""Concurrent holders of the per-key slots against a real redis-server, in threads and in
processes: slots in use never exceed the limit, a live holder never loses its slot however
long it holds it, and the slot of a holder that dies is freed by the reconciler (here a loop
that releases dead holders, as worker.job.slots does for jobs that no longer need their
slot), never by a timer.
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

from worker.infra.redis_server import RedisServer
from worker.limits import KeyLimits

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
