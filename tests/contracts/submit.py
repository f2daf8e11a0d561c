"""The submit step: the one step that spends money.

Each test counts what the provider saw (POSTs, tasks created) and what the record says
(state, billing, claim), so that a second POST, a lost task id or a wrong billing fails it.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.contracts.harness import FakeProvider, MoneyContract, job_of, set_up
from tests.pipeline_helpers import RecordingEngine, make_job, run_step
from worker.infra.durability import Durability
from worker.job import calls, pipeline
from worker.job.record import Billing, Job, JobState
from worker.job.step import claim_number
from worker.job.submit_refusals import NOT_DURABLE_RETRY
from worker.job.sweeper import sweep
from worker.job.transitions import WAIT_FOR_SLOT

S = JobState


class SubmitContract(MoneyContract):
    def test_the_claim_is_recorded_before_the_post_and_the_task_id_after_it(
        self, engine: RecordingEngine, provider: FakeProvider
    ) -> None:
        job_id = make_job(engine)
        at_post: list[Job] = []
        provider.on_post = lambda: at_post.append(job_of(engine, job_id))
        assert run_step(engine, "submit", job_id, seq=0).action == "next"
        (seen,) = at_post
        assert (seen.state, seen.billing) == (S.SUBMITTING, Billing.PENDING)
        assert seen.submit_claim == claim_number(0, 0) and seen.submit_intent_at
        job = job_of(engine, job_id)
        assert (job.state, job.billing, job.remote_task_id) == (
            S.SUBMITTED,
            Billing.BILLED,
            "task_1",
        )
        assert provider.posts == 1 and provider.idempotency_keys == [job_id]
        assert engine.limits.holds("default", job_id) and engine.limits.in_use("default") == 1

    def test_messages_arriving_during_the_post_make_no_second_post(
        self, engine: RecordingEngine, provider: FakeProvider
    ) -> None:
        job_id = make_job(engine)
        inner: list[str] = []

        def redelivered() -> None:
            provider.on_post = None
            for attempt in (0, 1):  # an older message, and a copy of the one in flight
                inner.append(run_step(engine, "submit", job_id, seq=0, attempt=attempt).action)

        provider.on_post = redelivered
        assert run_step(engine, "submit", job_id, seq=0, attempt=1).action == "next"
        assert inner == ["stop", "stop"]
        assert provider.posts == 1
        job = job_of(engine, job_id)
        assert (job.state, job.billing, job.remote_task_id) == (
            S.SUBMITTED,
            Billing.BILLED,
            "task_1",
        )

    @pytest.mark.parametrize("reply", ["drop", "gateway", "no_id"])
    def test_an_ambiguous_reply_leaves_the_job_unknown_and_it_is_never_posted_again(
        self, engine: RecordingEngine, provider: FakeProvider, reply: str
    ) -> None:
        provider.replies = [reply]
        job_id = make_job(engine)
        assert run_step(engine, "submit", job_id, seq=0).action == "stop"
        job = job_of(engine, job_id)
        assert (job.state, job.billing, job.remote_task_id) == (
            S.SUBMIT_UNKNOWN, Billing.UNKNOWN, None,
        )  # fmt: skip
        assert job.error_code == "submit_unknown" and job.error_message
        assert job.summary()["possibly_billed"] == 1
        assert engine.limits.holds("default", job_id)  # its task, if made, is generating
        # A redelivered message, a retry and the sweeper all leave it for the operator.
        assert run_step(engine, "submit", job_id, seq=0).action == "stop"
        assert run_step(engine, "submit", job_id, seq=0, attempt=1).action == "stop"
        sweep(engine, grace=0.0)
        assert job_of(engine, job_id).state is S.SUBMIT_UNKNOWN
        assert provider.posts == 1

    def test_a_429_puts_the_job_back_at_the_head_of_its_line_unbilled(
        self, engine: RecordingEngine, provider: FakeProvider
    ) -> None:
        provider.replies = ["429"]
        job_id = make_job(engine)
        assert run_step(engine, "submit", job_id, seq=0).action == "stop"
        job = job_of(engine, job_id)
        assert (job.state, job.billing, job.seq) == (S.WAITING_FOR_SLOT, Billing.NONE, 1)
        assert not engine.limits.holds("default", job_id)
        assert engine.limits.position("default", job_id) == 1  # first in line
        assert ("relaydance.grant", ("default",), 5.0) in engine.sent
        # The old chain is stale; the chain a grant starts claims above it and posts once.
        assert run_step(engine, "submit", job_id, seq=0).action == "stop"
        assert run_step(engine, "submit", job_id, seq=1).action == "next"
        assert (provider.posts, provider.created) == (2, 1)
        job = job_of(engine, job_id)
        assert (job.state, job.billing, job.remote_task_id) == (
            S.SUBMITTED,
            Billing.BILLED,
            "task_1",
        )

    def test_the_providers_own_5xx_is_retried_free_with_the_same_idempotency_key(
        self, engine: RecordingEngine, provider: FakeProvider
    ) -> None:
        provider.replies = ["500"]
        job_id = make_job(engine)
        outcome = run_step(engine, "submit", job_id, seq=0)
        assert outcome.action == "again"
        assert job_of(engine, job_id).billing is Billing.NONE  # nothing was created
        assert run_step(engine, "submit", job_id, seq=0, **outcome.kwargs).action == "next"
        assert (provider.posts, provider.created) == (2, 1)
        assert provider.idempotency_keys == [job_id, job_id]
        assert job_of(engine, job_id).billing is Billing.BILLED

    def test_a_request_that_never_left_is_retried_and_billed_once(
        self, engine: RecordingEngine, provider: FakeProvider
    ) -> None:
        provider.replies = ["refuse"]
        job_id = make_job(engine)
        outcome = run_step(engine, "submit", job_id, seq=0)
        assert outcome.action == "again" and provider.posts == 0
        assert job_of(engine, job_id).billing is Billing.NONE
        assert run_step(engine, "submit", job_id, seq=0, **outcome.kwargs).action == "next"
        assert (provider.posts, provider.created) == (1, 1)

    def test_a_refused_request_fails_unbilled_and_gives_its_slot_back(
        self, engine: RecordingEngine, provider: FakeProvider
    ) -> None:
        provider.replies = ["400"]
        job_id = make_job(engine)
        assert run_step(engine, "submit", job_id, seq=0).action == "stop"
        job = job_of(engine, job_id)
        assert (job.state, job.billing) == (S.FAILED, Billing.NONE)
        assert engine.limits.in_use("default") == 0
        assert (provider.posts, provider.created) == (1, 0)

    def test_a_claim_no_replica_confirmed_is_never_sent(
        self, engine: RecordingEngine, provider: FakeProvider
    ) -> None:
        engine.store.durability = Durability(engine.redis, replicas=1, timeout_ms=10)
        job_id = make_job(engine)
        assert run_step(engine, "submit", job_id, seq=0).action == "stop"
        assert provider.posts == 0
        job = job_of(engine, job_id)
        assert (job.state, job.billing, job.remote_task_id) == (
            S.WAITING_FOR_SLOT, Billing.NONE, None,
        )  # fmt: skip
        assert engine.limits.position("default", job_id) == 1  # first in line
        assert ("relaydance.grant", ("default",), NOT_DURABLE_RETRY) in engine.sent

    def test_a_cancel_during_the_post_keeps_the_task_id_billed_and_the_slot(
        self, engine: RecordingEngine, provider: FakeProvider
    ) -> None:
        job_id = make_job(engine)
        provider.on_post = lambda: pipeline.cancel(engine, job_id) or None
        assert run_step(engine, "submit", job_id, seq=0).action == "stop"
        job = job_of(engine, job_id)
        assert (job.state, job.billing, job.remote_task_id) == (
            S.CANCELED,
            Billing.BILLED,
            "task_1",
        )
        assert engine.limits.holds("default", job_id)  # the task generates on
        assert provider.posts == 1

    def test_a_message_whose_job_moved_on_after_it_was_read_makes_no_post(
        self, engine: RecordingEngine, provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        job_id = make_job(engine)
        admit = calls.admit

        def requeued_meanwhile(*args: Any, **kwargs: Any) -> Any:
            # Between this message's read and its claim, another chain moved the job on.
            engine.store.apply(job_id, WAIT_FOR_SLOT, incr={"seq": 1})
            return admit(*args, **kwargs)

        monkeypatch.setattr(calls, "admit", requeued_meanwhile)
        outcome = run_step(engine, "submit", job_id, seq=0)
        assert (outcome.action, provider.posts) == ("stop", 0)
        job = job_of(engine, job_id)
        assert (job.state, job.seq, job.billing) == (S.WAITING_FOR_SLOT, 1, Billing.NONE)

    def test_a_recorded_task_whose_state_change_was_lost_is_not_posted_again(
        self, engine: RecordingEngine, provider: FakeProvider
    ) -> None:
        job_id = make_job(engine)
        set_up(
            engine,
            job_id, states={S.QUEUED}, to=S.SUBMITTING,
            set={"remote_task_id": "task_9", "billing": "billed", "submit_claim": 0},
        )  # fmt: skip
        assert run_step(engine, "submit", job_id, seq=0).action == "next"
        assert job_of(engine, job_id).state is S.SUBMITTED
        assert provider.posts == 0
