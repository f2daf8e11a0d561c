"""The sweep in every worker, against a real redis-server: one sweep fleet-wide per interval
however many workers tick, never two at once; a Redis outage logged once and outlived;
the old ``relaydance.sweep`` task still served, under the same lock.

Loops run as threads of this process with a recording engine (no broker); a whole fleet
with the loop in its workers is in tests/integration/test_redis_restart.py.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest

from config.settings import load_settings
from tests.fleet import wait_until
from tests.pipeline_helpers import RecordingEngine, make_engine
from worker.infra.redis_server import RedisServer
from worker.job import sweep_loop
from worker.job.sweep_health import LOOPS_KEY, sweep_health
from worker.job.sweep_loop import LOCK_KEY, SweepLoop
from worker.job.sweeper import LAST_SWEEP_KEY, SweepReport

INTERVAL = 0.5


def _engine(url: str, tmp_path: Path) -> RecordingEngine:
    return make_engine(load_settings(
        redis_url=url, api_key="sk-test-sweep-loop", output_dir=tmp_path / "renders",
        sweep_interval_seconds=INTERVAL,
    ))  # fmt: skip


@pytest.fixture
def sweeps(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, float]]:
    """Every sweep's (start, end), from a stand-in sweep that takes 50 ms."""
    spans: list[tuple[float, float]] = []
    lock = threading.Lock()

    def recorded(engine: object) -> SweepReport:
        start = time.monotonic()
        time.sleep(0.05)
        with lock:
            spans.append((start, time.monotonic()))
        return SweepReport(resumed=[], granted=[], checked=0)

    monkeypatch.setattr(sweep_loop, "sweep", recorded)
    return spans


@pytest.fixture
def loops(redis_url: str, tmp_path: Path) -> Iterator[list[SweepLoop]]:
    engines = [_engine(redis_url, tmp_path) for _ in range(3)]
    started = [
        SweepLoop(lambda e=e: e, node=f"w{n}@test").start()  # type: ignore[misc]
        for n, e in enumerate(engines)
    ]
    yield started
    for loop in started:
        loop.stop()
    for engine in engines:
        engine.close()


def test_three_workers_sweep_once_per_interval_between_them_and_never_at_once(
    loops: list[SweepLoop], sweeps: list[tuple[float, float]], redis_url: str, tmp_path: Path
) -> None:
    assert wait_until(lambda: len(sweeps) >= 4, timeout=30)
    spans = sorted(sweeps)
    # The lock lapses one interval after a sweep began, whatever the machine's speed: so
    # sweeps start at least an interval apart, and none starts before the last one ended.
    assert all(later[0] - earlier[0] >= 0.9 * INTERVAL for earlier, later in pairwise(spans))
    assert all(later[0] >= earlier[1] for earlier, later in pairwise(spans))
    engine = _engine(redis_url, tmp_path)
    health = sweep_health(engine.redis, engine.settings)
    assert health.state == "running" and health.loops == 3
    assert engine.redis.zcard(LOOPS_KEY) == 3
    engine.close()


def test_the_old_sweep_task_runs_under_the_same_lock(
    sweeps: list[tuple[float, float]], redis_url: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from tasks.render import sweep as sweep_task

    engine = _engine(redis_url, tmp_path)
    monkeypatch.setattr("tasks.render.get_engine", lambda: engine)
    try:
        assert sweep_task.name == "relaydance.sweep"  # messages an older beat queued
        assert sweep_task() == {"resumed": 0, "granted": 0}
        assert len(sweeps) == 1 and engine.redis.get(LAST_SWEEP_KEY) is not None
        assert engine.redis.pttl(LOCK_KEY) > 0  # this interval's turn is taken
        sweep_task()  # a second message within the interval: no second sweep
        assert len(sweeps) == 1
    finally:
        engine.close()


def test_a_redis_outage_is_logged_once_and_the_sweep_goes_on_after_it(
    sweeps: list[tuple[float, float]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with RedisServer(appendonly=True) as server:
        engine = _engine(server.url, tmp_path)
        loop = SweepLoop(lambda: engine, node="w@test")
        with caplog.at_level(logging.INFO, logger="worker.job.sweep_loop"):
            loop.start()
            try:
                assert wait_until(lambda: len(sweeps) >= 1, timeout=20)
                server.restart(down_for=2.0)  # about a dozen ticks meet no Redis
                count = len(sweeps)
                assert wait_until(lambda: len(sweeps) > count, timeout=30)
            finally:
                loop.stop()
                engine.close()
    messages = [r.getMessage() for r in caplog.records]
    down = [m for m in messages if "Redis is unreachable" in m]
    assert len(down) == 1 and down[0].startswith("sweep: Redis is unreachable (ConnectionError")
    assert len([m for m in messages if m.startswith("sweep: Redis answers again after")]) == 1


def test_a_sweep_that_fails_each_time_is_logged_once_with_its_traceback_then_as_stopped(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    def broken(engine: object) -> SweepReport:
        raise RuntimeError("a record the sweep cannot read")

    monkeypatch.setattr(sweep_loop, "sweep", broken)
    engine = _engine(redis_url, tmp_path)
    now = time.time()
    engine.redis.set(LAST_SWEEP_KEY, repr(now - 600))  # the last good sweep, 10 m ago
    engine.redis.zadd(LOOPS_KEY, {f"w0@test|{now - 3600!r}": now})  # running for an hour
    loop = SweepLoop(lambda: engine, node="w1@test")
    try:
        with caplog.at_level(logging.INFO):
            for _ in range(3):
                engine.redis.delete(LOCK_KEY)  # each tick this worker's turn again
                loop.tick()
    finally:
        engine.close()
    failed = [r for r in caplog.records if r.getMessage().startswith("sweep failed")]
    assert len(failed) == 1 and failed[0].exc_info is not None
    stopped = [r for r in caplog.records if "THE SWEEP HAS STOPPED" in r.getMessage()]
    assert len(stopped) == 1 and stopped[0].levelname == "ERROR"
    assert "last completed 10 m ago" in stopped[0].getMessage()
