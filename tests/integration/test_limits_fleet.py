"""Per-key limits with several real worker processes, Redis and the simulator's real 429s."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from simulator.testing import SimulatorProcess
from tasks import enqueue_render, get_job, wait
from tests.fleet import Fleet, fleet_env, use_env, wait_until
from worker.infra.redis_server import RedisServer
from worker.job.engine import get_engine
from worker.job.record import JobState

pytestmark = pytest.mark.integration
MODEL = "doubao-seedance-2-0-fast-260128"


class Fleets:
    """Two worker processes (one with beat) sharing one environment."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.a = Fleet(env, logs / "a", concurrency=4, beat=True)
        self.b = Fleet(env, logs / "b", concurrency=4)
        (logs / "a").mkdir()
        (logs / "b").mkdir()

    def start(self) -> None:
        self.a.start()
        self.b.start()

    def stop(self) -> None:
        self.a.stop()
        self.b.stop()

    def logs(self) -> str:
        return self.a.logs() + self.b.logs()


@pytest.fixture
def fleets(redis_server: RedisServer, sim: SimulatorProcess, tmp_path: Path) -> Fleets:
    redis.Redis.from_url(redis_server.url).flushall()
    return Fleets(
        fleet_env(redis_url=redis_server.url, sim_url=sim.url, output_dir=tmp_path / "out"),
        tmp_path,
    )


def _run(fleets: Fleets, extra: dict[str, str]) -> Iterator[None]:
    fleets.env.update(extra)
    with use_env(fleets.env):
        fleets.start()
        try:
            yield
        finally:
            fleets.stop()


def _render_all(n: int, *, key: str = "default") -> list[str]:
    return [enqueue_render({"model": MODEL, "prompt": f"clip {i}"}, key=key) for i in range(n)]


def test_a_limit_equal_to_the_providers_cap_sees_no_429_and_no_idle_slot(
    fleets: Fleets, sim: SimulatorProcess
) -> None:
    sim.configure(concurrency_cap=3, gen_time_mean=0.5)
    for _ in _run(fleets, {"RELAYDANCE_MAX_CONCURRENCY": "3"}):
        ids = _render_all(12)
        jobs = [wait(i, timeout=90) for i in ids]
    assert [j.state for j in jobs] == [JobState.DONE] * 12, fleets.logs()
    stats = sim.stats()
    assert stats["rate_limited"] == 0
    assert stats["submissions"] == 12
    assert max(stats["peak_in_flight_by_key"].values()) == 3


def test_a_limit_above_the_providers_cap_falls_to_the_cap_and_every_job_finishes(
    fleets: Fleets, sim: SimulatorProcess
) -> None:
    sim.configure(concurrency_cap=2, gen_time_mean=0.5, retry_after=0.5)
    for _ in _run(fleets, {"RELAYDANCE_MAX_CONCURRENCY": "6"}):
        ids = _render_all(14)
        jobs = [wait(i, timeout=120) for i in ids]
        effective = get_engine().limits.effective_limit("default", limit=6)
    assert [j.state for j in jobs] == [JobState.DONE] * 14, fleets.logs()
    stats = sim.stats()
    assert stats["rate_limited"] >= 1
    assert stats["submissions"] == 14  # a 429 creates nothing; each job was created once
    assert effective < 6


def test_another_keys_jobs_start_while_one_key_has_a_backlog(
    fleets: Fleets, sim: SimulatorProcess
) -> None:
    sim.configure(gen_time_mean=0.4)
    extra = {
        "RELAYDANCE_API_KEYS": '{"tenant-a": "sk-test-tenant-a", "tenant-b": "sk-test-tenant-b"}',
        "RELAYDANCE_MAX_CONCURRENCY": "2",
    }
    for _ in _run(fleets, extra):
        backlog = _render_all(30, key="tenant-a")
        late = _render_all(2, key="tenant-b")
        b_jobs = [wait(i, timeout=60) for i in late]
        a_jobs = [wait(i, timeout=120) for i in backlog]
    assert all(j.state is JobState.DONE for j in a_jobs + b_jobs), fleets.logs()
    b_started = max(j.times["submitted"] for j in b_jobs)
    a_submits = sorted(j.times["submitted"] for j in a_jobs)
    # Key B did not queue behind key A: its jobs were submitted while most of A still waited.
    assert b_started < a_submits[len(a_submits) // 2]


def test_a_killed_holder_keeps_its_slot_while_its_task_lives_and_both_jobs_finish_once(
    fleets: Fleets, sim: SimulatorProcess
) -> None:
    sim.configure(gen_time_mean=8.0, concurrency_cap=1)  # still running on a loaded machine
    extra = {"RELAYDANCE_MAX_CONCURRENCY": "1"}
    fleets.env.update(extra)
    with use_env(fleets.env):
        fleets.a.with_beat = False
        fleets.a.start()
        try:
            ids = [enqueue_render({"model": MODEL, "prompt": f"clip {i}"}) for i in range(2)]

            def one_holds_one_waits() -> bool:
                jobs = [get_job(i) for i in ids]
                holding = [j for j in jobs if j.state in (JobState.SUBMITTED, JobState.RUNNING)]
                waiting = [j for j in jobs if j.state is JobState.WAITING_FOR_SLOT]
                return len(holding) == len(waiting) == 1 and holding[0].poll_count >= 1

            # Four worker threads take the two messages at once: either may win the slot.
            assert wait_until(one_holds_one_waits, timeout=30), fleets.logs()
            first, second = sorted(ids, key=lambda i: get_job(i).state is JobState.WAITING_FOR_SLOT)
            fleets.a.kill_worker()  # the holder dies without releasing
            limits = get_engine().limits
            # Its task still generates at the provider: no timer hands its slot on.
            assert not wait_until(lambda: not limits.holds("default", first), timeout=3)
            assert get_job(second).state is JobState.WAITING_FOR_SLOT
            fleets.a.with_beat = True
            fleets.a.start()  # a new worker and beat: the sweeper resumes both jobs
            jobs = [wait(first, timeout=60), wait(second, timeout=60)]
        finally:
            fleets.stop()
    assert [j.state for j in jobs] == [JobState.DONE, JobState.DONE], fleets.logs()
    stats = sim.stats()
    assert (stats["submissions"], stats["rate_limited"], stats["paid_twice"]) == (2, 0, 0)
