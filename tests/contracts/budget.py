"""Batch budgets: a reservation before each job, given back only when nothing was billed.

Every test reads the batch's money (committed, spent, possibly billed) after the provider
did what the case needs, and counts the POSTs, so a refund of a billed job, a second
refund, or a job enqueued past its budget fails it.
"""

from __future__ import annotations

import pytest

from tests.contracts.harness import MODEL, FakeProvider, MoneyContract, job_of, set_up
from tests.pipeline_helpers import RecordingEngine, run_step
from worker.batch import Batches, parse_records
from worker.batch.budget import Ledger, settlement, to_micros
from worker.job import pipeline
from worker.job.record import Billing, JobState

S = JobState
COST = 0.70  # the estimate of one default line of MODEL
C = to_micros(COST)


def batch_of(engine: RecordingEngine, lines: int, budget: float) -> tuple[Batches, str, list[str]]:
    batches = Batches(engine)
    records = [{"model": MODEL, "prompt": f"line {n}"} for n in range(lines)]
    sub = batches.submit(parse_records(records), budget=budget)
    return batches, sub.batch_id, list(batches.job_ids(sub.batch_id).values())


def money(batches: Batches, batch_id: str) -> tuple[float, float, float]:
    status = batches.status(batch_id)
    return (
        round(status.committed_usd, 6),
        round(status.spent_usd, 6),
        round(status.unknown_usd, 6),
    )


class BudgetContract(MoneyContract):
    @pytest.mark.parametrize(
        ("billing", "orphans", "expected"),
        [
            ("none", 0, (C, 0, 0)),  # never reached the provider: all back
            ("not_billed", 0, (C, 0, 0)),  # its generation failed: all back
            ("billed", 0, (0, C, 0)),  # billed, whatever happened next: kept
            ("unknown", 0, (0, 0, C)),  # in doubt: kept as possibly billed
            ("pending", 0, (0, 0, C)),
            ("billed", 1, (0, C, C)),  # a resubmission's orphan is possibly billed too
        ],
    )
    def test_money_follows_billing(
        self, billing: str, orphans: int, expected: tuple[int, int, int]
    ) -> None:
        money = settlement(C, billing, orphans)
        assert (money.release, money.spent, money.unknown) == expected

    def test_a_reservation_never_passes_the_budget_and_settles_once(
        self, engine: RecordingEngine
    ) -> None:
        ledger, meta, final = Ledger(engine.redis), "rd:test:batch", "rd:test:final"
        engine.redis.hset(meta, "budget_micros", to_micros(1.0))
        assert ledger.reserve(meta, C)
        assert not ledger.reserve(meta, C)  # 1.40 > 1.00
        assert int(engine.redis.hget(meta, "reserved_micros")) == C
        back = settlement(C, "not_billed")
        assert ledger.settle(meta, final, "job_1", "failed", back)
        assert not ledger.settle(meta, final, "job_1", "failed", back)  # a second look
        assert int(engine.redis.hget(meta, "reserved_micros")) == 0

    def test_lines_past_the_budget_are_skipped_and_never_posted(
        self, engine: RecordingEngine, provider: FakeProvider
    ) -> None:
        batches, batch_id, jobs = batch_of(engine, 3, budget=1.5)
        assert len(jobs) == 2  # the third line does not fit
        for job_id in jobs:
            run_step(engine, "submit", job_id, seq=0)
        assert provider.posts == 2
        assert money(batches, batch_id)[0] == pytest.approx(2 * COST)

    def test_a_failed_generation_gives_its_reservation_back_once_and_the_line_can_go_on(
        self, engine: RecordingEngine, provider: FakeProvider
    ) -> None:
        batches, batch_id, (job_id,) = batch_of(engine, 1, budget=COST)
        assert run_step(engine, "submit", job_id, seq=0).action == "next"
        provider.finish("task_1", "failed")
        set_up(engine, job_id, due=0.0)
        assert run_step(engine, "poll", job_id, seq=0).action == "stop"
        assert job_of(engine, job_id).billing is Billing.NOT_BILLED
        assert money(batches, batch_id) == (0.0, 0.0, 0.0)
        assert money(batches, batch_id) == (0.0, 0.0, 0.0)  # settled once, not twice
        again = batches.resume(batch_id)
        assert (again.enqueued, again.skipped_budget) == (1, 0)
        assert money(batches, batch_id)[0] == pytest.approx(COST)

    def test_a_job_billed_and_then_canceled_keeps_its_reservation(
        self, engine: RecordingEngine, provider: FakeProvider
    ) -> None:
        batches, batch_id, (job_id,) = batch_of(engine, 1, budget=COST)
        run_step(engine, "submit", job_id, seq=0)
        assert pipeline.cancel(engine, job_id)
        assert money(batches, batch_id) == (COST, COST, 0.0)
        again = batches.resume(batch_id)
        assert (again.enqueued, again.skipped_budget) == (0, 1)  # never past the budget
        assert provider.posts == 1

    def test_an_unknown_submission_keeps_its_reservation_as_possibly_billed(
        self, engine: RecordingEngine, provider: FakeProvider
    ) -> None:
        provider.replies = ["drop"]
        batches, batch_id, (job_id,) = batch_of(engine, 1, budget=COST)
        run_step(engine, "submit", job_id, seq=0)
        assert job_of(engine, job_id).state is S.SUBMIT_UNKNOWN
        assert pipeline.cancel(engine, job_id)  # the operator gives up on it
        assert money(batches, batch_id) == (COST, 0.0, COST)
        assert batches.resume(batch_id).enqueued == 0
        assert provider.posts == 1
