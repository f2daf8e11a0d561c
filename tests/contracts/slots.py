"""Concurrency slots: taken before a POST, given back by job records, never by a timer.

The provider counts a task against the key from its creation until it is final, so each
test counts the slots in use against the tasks that are live at the provider.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from config.settings import Settings
from config.task_names import SUBMIT
from tests.contracts.harness import FakeProvider, MoneyContract, job_of, money_settings, set_up
from tests.pipeline_helpers import RecordingEngine, make_job, run_step
from worker.job.record import Billing, JobState
from worker.job.slots import reconcile

S = JobState
KEY = "default"
DAY = 86400.0


def resumed(engine: RecordingEngine) -> list[str]:
    """The jobs sent on to their submit step (a slot given to the next in line)."""
    return [args[0] for name, args, _ in engine.sent if name == SUBMIT]


def poll_now(engine: RecordingEngine, job_id: str) -> str:
    set_up(engine, job_id, due=0.0)  # the first poll is due now
    return run_step(engine, "poll", job_id, seq=0).action


class SlotsContract(MoneyContract):
    @pytest.fixture
    def settings(self, tmp_path: Path) -> Settings:
        return money_settings(tmp_path, max_concurrency=2, submit_unknown_hold_seconds=30)

    def test_the_slots_cap_the_posts_and_a_finished_generation_hands_its_slot_on(
        self, engine: RecordingEngine, provider: FakeProvider
    ) -> None:
        first, second, third = (make_job(engine) for _ in range(3))
        assert [run_step(engine, "submit", j, seq=0).action for j in (first, second, third)] == [
            "next", "next", "stop",
        ]  # fmt: skip
        assert provider.posts == 2 and engine.limits.in_use(KEY) == 2
        assert job_of(engine, third).state is S.WAITING_FOR_SLOT
        assert engine.limits.position(KEY, third) == 1
        provider.finish("task_1", url="https://cdn.provider.test/clip.mp4")
        assert poll_now(engine, first) == "next"
        assert job_of(engine, first).state is S.GENERATED
        assert set(engine.limits.holders(KEY)) == {second, third}
        assert resumed(engine) == [third]  # the freed slot started the next in line
        assert run_step(engine, "submit", third, seq=0).action == "next"
        assert provider.posts == 3 and engine.limits.in_use(KEY) == 2

    def test_reconcile_frees_the_slot_of_a_job_that_ended_and_grants_the_line(
        self, engine: RecordingEngine, provider: FakeProvider
    ) -> None:
        engine.settings = engine.settings.model_copy(update={"max_concurrency": 1})
        ended, waiting = make_job(engine), make_job(engine)
        run_step(engine, "submit", ended, seq=0)
        run_step(engine, "submit", waiting, seq=0)
        # The job ended, and its worker was killed before it gave the slot back.
        assert engine.store.fail(ended, code="generation_failed", message="failed")
        assert engine.limits.holders(KEY) == [ended] and engine.limits.waiting(KEY) == 1
        report = reconcile(engine, [KEY])
        assert report.freed == [ended] and waiting in report.granted
        assert engine.limits.holders(KEY) == [waiting]

    def test_no_amount_of_time_takes_a_live_jobs_slot(
        self, engine: RecordingEngine, provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        live = make_job(engine)
        run_step(engine, "submit", live, seq=0)
        later = time.time() + 30 * DAY
        monkeypatch.setattr(time, "time", lambda: later)
        report = reconcile(engine, [KEY])
        monkeypatch.undo()
        assert report.freed == [] and engine.limits.holders(KEY) == [live]
        assert job_of(engine, live).state is S.SUBMITTED

    def test_an_unknown_submission_keeps_its_slot_for_the_hold_then_hands_it_on(
        self, engine: RecordingEngine, provider: FakeProvider
    ) -> None:
        engine.settings = engine.settings.model_copy(update={"max_concurrency": 1})
        provider.replies = ["drop"]
        unknown, waiting = make_job(engine), make_job(engine)
        run_step(engine, "submit", unknown, seq=0)
        assert run_step(engine, "submit", waiting, seq=0).action == "stop"
        assert reconcile(engine, [KEY]).freed == []  # within the hold: its task may generate
        assert engine.limits.holders(KEY) == [unknown]
        since = time.time() - 31
        engine.store.update_fields(unknown, states={S.SUBMIT_UNKNOWN}, set={"unknown_since": since})
        report = reconcile(engine, [KEY])
        assert report.freed == [unknown] and report.granted == [waiting]
        assert engine.limits.holders(KEY) == [waiting]
        assert job_of(engine, unknown).state is S.SUBMIT_UNKNOWN  # still the operator's call
        assert provider.posts == 1

    def test_a_live_task_that_lost_its_slot_takes_one_back_over_the_limit(
        self, engine: RecordingEngine, provider: FakeProvider
    ) -> None:
        engine.settings = engine.settings.model_copy(update={"max_concurrency": 1})
        live, other = make_job(engine), make_job(engine)
        run_step(engine, "submit", live, seq=0)
        engine.limits.release(KEY, live)  # what a failover can leave: the slot is gone
        assert run_step(engine, "submit", other, seq=0).action == "next"
        report = reconcile(engine, [KEY])
        assert report.taken == [live]
        assert sorted(engine.limits.holders(KEY)) == sorted([live, other])
        assert engine.limits.in_use(KEY) == 2  # over the limit: the provider counts both
        assert provider.posts == 2

    def test_a_canceled_billed_job_holds_its_slot_until_the_provider_says_its_task_ended(
        self, engine: RecordingEngine, provider: FakeProvider
    ) -> None:
        from worker.job import pipeline

        job_id = make_job(engine)
        run_step(engine, "submit", job_id, seq=0)
        assert pipeline.cancel(engine, job_id)
        provider.finish("task_1", "running")
        assert reconcile(engine, [KEY]).freed == []
        assert engine.limits.holds(KEY, job_id)
        provider.finish("task_1", "succeeded")
        assert reconcile(engine, [KEY]).freed == [job_id]
        assert engine.limits.in_use(KEY) == 0
        assert job_of(engine, job_id).billing is Billing.BILLED
