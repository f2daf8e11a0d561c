"""Limits after a Redis failover: one sweep puts the slots right, and 429s teach nothing.

A promoted replica may hold the per-key semaphore as it was a moment before the records
the fleet goes on with: holders missing (a job submitted on the old primary holds no slot)
or extra (a job finished there still holds one). The new primary is told by its
replication id, which differs from the one the fleet recorded (the key holding it was
replicated from the old primary). Real Redis; the engine's messages are recorded.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from config.settings import load_settings
from tests.pipeline_helpers import RecordingEngine, make_engine, make_job
from worker.job.failover import PRIMARY_KEY, notice_new_primary
from worker.job.record import JobState
from worker.job.sweeper import sweep

S = JobState


@pytest.fixture
def engine(redis_url: str, tmp_path: Path) -> Iterator[RecordingEngine]:
    settings = load_settings(
        redis_url=redis_url, api_key="sk-test-slots", output_dir=tmp_path / "renders",
        max_concurrency=2, step_grace_seconds=60, sweep_grace_seconds=20,
    )  # fmt: skip
    eng = make_engine(settings)
    yield eng
    eng.close()


def _job(engine: RecordingEngine, state: JobState, **fields: object) -> str:
    job_id = make_job(engine)
    engine.store._change(job_id, states=None, to=state, set=fields or None, due=9e9)
    return job_id


def _after_a_failover(engine: RecordingEngine) -> None:
    """The fleet saw one primary; the one answering now is another."""
    notice_new_primary(engine)
    engine.redis.set(PRIMARY_KEY, "the-old-primarys-replication-id")


def test_one_sweep_after_a_failover_puts_the_slots_right_from_the_job_records(
    engine: RecordingEngine,
) -> None:
    running = _job(engine, S.RUNNING, remote_task_id="task_r")
    finished = _job(engine, S.DONE, remote_task_id="task_d")
    submitted = _job(engine, S.SUBMITTED, remote_task_id="task_s")  # its slot was lost
    granted = _job(engine, S.WAITING_FOR_SLOT)  # granted; the message to start it lost
    waiting = _job(engine, S.WAITING_FOR_SLOT)
    for holder in (running, finished):
        engine.limits.acquire("default", holder, limit=2)
    engine.limits.acquire("default", waiting, limit=2)  # in line
    _after_a_failover(engine)
    report = sweep(engine)
    # The live task first (the provider counts it), the finished job's slot back: the key
    # is full with its two live tasks, and the line waits.
    assert sorted(engine.limits.holders("default")) == sorted([running, submitted])
    assert (report.taken, report.freed, report.granted) == ([submitted], [finished], [])
    assert engine.limits.position("default", waiting) == 1
    assert granted not in engine.limits.holders("default")  # never was a holder: not started
    # Once slots are free, a job holding one but never started is started by the sweep
    # after a failover, as the waiter the same sweep grants a slot to.
    for live in (running, submitted):
        engine.store._change(live, states=None, to=S.DONE)
    engine.limits.acquire("default", granted, limit=3)
    engine.redis.set(PRIMARY_KEY, "another-primary-again")
    assert sorted(sweep(engine).granted) == sorted([granted, waiting])


def test_429s_right_after_a_failover_teach_the_limit_nothing_and_are_still_counted(
    engine: RecordingEngine,
) -> None:
    assert notice_new_primary(engine) is False  # the first primary the fleet sees
    assert engine.limits.on_rate_limited("default", in_flight=1) == 1  # learned: cut to 1
    other = "tenant-b"
    engine.limits.acquire(other, "rdj_x", limit=4)  # the alias is known to the limits
    _after_a_failover(engine)
    assert not engine.limits.adaptive.is_quiet(other)
    # A 429 that meets the new primary before any sweep quiets the limits at once, and
    # leaves the notice (and the recovery that comes with it) to the sweep.
    assert notice_new_primary(engine, record=False) is True
    assert engine.limits.adaptive.is_quiet(other)
    assert notice_new_primary(engine) is True  # the sweep takes the notice
    assert notice_new_primary(engine) is False  # once
    for _ in range(3):
        assert engine.limits.on_rate_limited(other, limit=4, in_flight=1) == 4
    assert engine.limits.adaptive.rate_limited_last_hour(other) == 3
    assert engine.limits.effective_limit(other, limit=4) == 4


def test_a_slot_the_reconciler_takes_back_quiets_that_keys_learning(
    engine: RecordingEngine,
) -> None:
    lost = _job(engine, S.RUNNING, remote_task_id="task_lost")
    notice_new_primary(engine)  # no failover: only the slot tells of a miscount
    assert engine.limits.on_rate_limited("default", in_flight=1) == 1  # learning works
    engine.redis.delete("rd:limits:{default}:adaptive")
    report = sweep(engine)
    assert report.taken == [lost] and engine.limits.adaptive.is_quiet("default")
    assert engine.limits.on_rate_limited("default", in_flight=1) == 2
