"""Webhooks and orphans: a task whose reply was lost is adopted, never paid for twice.

The receiver (:func:`worker.web.receiver.handle_webhook`) decides from the store's read
whether to queue a re-fetch; the webhook step (:func:`worker.job.webhook.on_webhook`)
re-fetches the task and adopts it, or counts a second billed task. Every test counts the
POSTs the provider saw and what the record says was billed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from config.settings import Settings
from tests.contracts.harness import FakeProvider, MoneyContract, job_of, money_settings
from tests.pipeline_helpers import RecordingEngine, make_job, run_step
from worker.job.callback import claim_proof, token_for
from worker.job.record import Billing, JobState
from worker.job.resubmit import resubmit
from worker.job.slots import reconcile
from worker.job.step import claim_number
from worker.job.webhook import on_webhook
from worker.web.receiver import WEBHOOK_TASK, handle_webhook

S = JobState
SECRET = "money-secret-" + "q3VnT0xP8sWkLm2ZrYc5HdEa9uJbNf4G"
FIRST = claim_number(0, 0)


class AdoptionContract(MoneyContract):
    @pytest.fixture
    def settings(self, tmp_path: Path) -> Settings:
        return money_settings(
            tmp_path, webhook_base_url="https://hooks.test/hooks", webhook_secret=SECRET
        )

    @staticmethod
    def deliver(
        engine: RecordingEngine, job_id: str, body: object, *, claim: int | None = None
    ) -> tuple[int, dict[str, object]]:
        proof = None if claim is None else claim_proof(SECRET, job_id, claim)
        token = token_for(SECRET, job_id)
        raw = json.dumps(body).encode()
        return handle_webhook(job_id, token, raw, "application/json", claim=proof, engine=engine)

    @staticmethod
    def hooks(engine: RecordingEngine) -> list[tuple[object, ...]]:
        return [args for name, args, _ in engine.sent if name == WEBHOOK_TASK]

    def test_a_lost_replys_task_is_adopted_through_its_own_webhook_and_not_posted_again(
        self, engine: RecordingEngine, provider: FakeProvider
    ) -> None:
        provider.replies = ["drop"]
        job_id = make_job(engine)
        run_step(engine, "submit", job_id, seq=0)
        assert job_of(engine, job_id).state is S.SUBMIT_UNKNOWN
        status, reply = self.deliver(engine, job_id, {"task_id": "task_1"}, claim=FIRST)
        assert (status, reply["status"]) == (202, "accepted")
        (args,) = self.hooks(engine)
        assert args == (job_id, "task_1", 0, FIRST)
        outcome = on_webhook(engine, job_id, task_id="task_1", claim=FIRST)
        assert outcome.action == "next"
        job = job_of(engine, job_id)
        assert (job.state, job.billing, job.remote_task_id) == (
            S.SUBMITTED,
            Billing.BILLED,
            "task_1",
        )
        assert job.adopted_from == "webhook" and job.possibly_billed == 0
        assert engine.limits.holds("default", job_id)
        assert (provider.posts, provider.created) == (1, 1)

    def test_a_task_adopted_after_its_hold_ran_out_takes_its_slot_back(
        self, engine: RecordingEngine, provider: FakeProvider
    ) -> None:
        provider.replies = ["drop"]
        job_id = make_job(engine)
        run_step(engine, "submit", job_id, seq=0)
        since = time.time() - engine.settings.submit_unknown_hold_seconds - 1
        engine.store.update_fields(job_id, states={S.SUBMIT_UNKNOWN}, set={"unknown_since": since})
        assert reconcile(engine, ["default"]).freed == [job_id]
        assert on_webhook(engine, job_id, task_id="task_1", claim=FIRST).action == "next"
        assert engine.limits.holders("default") == [job_id]  # the provider counts it
        assert job_of(engine, job_id).state is S.SUBMITTED

    def test_an_adopted_task_that_already_finished_goes_straight_to_its_download(
        self, engine: RecordingEngine, provider: FakeProvider
    ) -> None:
        provider.replies = ["drop"]
        job_id = make_job(engine)
        run_step(engine, "submit", job_id, seq=0)
        provider.finish("task_1", url="https://cdn.provider.test/clip.mp4")
        outcome = on_webhook(engine, job_id, task_id="task_1", claim=FIRST)
        assert (outcome.action, outcome.url) == ("next", "https://cdn.provider.test/clip.mp4")
        job = job_of(engine, job_id)
        assert (job.state, job.billing, job.remote_task_id) == (
            S.GENERATED,
            Billing.BILLED,
            "task_1",
        )
        assert engine.limits.in_use("default") == 0  # generation is over: the slot is free

    def test_a_delivery_without_its_submissions_proof_adopts_nothing(
        self, engine: RecordingEngine, provider: FakeProvider
    ) -> None:
        provider.replies = ["drop"]
        job_id = make_job(engine)
        run_step(engine, "submit", job_id, seq=0)
        assert self.deliver(engine, job_id, {"task_id": "task_1"}) == (
            200, {"ok": True, "status": "ignored"},
        )  # fmt: skip
        assert on_webhook(engine, job_id, task_id="task_1").action == "stop"
        job = job_of(engine, job_id)
        assert (job.state, job.billing, job.remote_task_id) == (
            S.SUBMIT_UNKNOWN,
            Billing.UNKNOWN,
            None,
        )
        assert self.hooks(engine) == []

    def test_a_job_back_in_line_after_a_429_created_nothing_and_adopts_nothing(
        self, engine: RecordingEngine, provider: FakeProvider
    ) -> None:
        provider.replies = ["429"]
        job_id = make_job(engine)
        run_step(engine, "submit", job_id, seq=0)
        provider.tasks["task_7"] = {"task_id": "task_7", "status": "running"}  # someone's
        assert self.deliver(engine, job_id, {"task_id": "task_7"}, claim=FIRST)[0] == 200
        assert on_webhook(engine, job_id, task_id="task_7", claim=FIRST).action == "stop"
        job = job_of(engine, job_id)
        assert (job.state, job.billing, job.remote_task_id) == (
            S.WAITING_FOR_SLOT,
            Billing.NONE,
            None,
        )

    def test_a_task_the_key_does_not_know_is_not_adopted(
        self, engine: RecordingEngine, provider: FakeProvider
    ) -> None:
        provider.replies = ["drop"]
        job_id = make_job(engine)
        run_step(engine, "submit", job_id, seq=0)
        assert on_webhook(engine, job_id, task_id="task_404", claim=FIRST).action == "stop"
        assert job_of(engine, job_id).remote_task_id is None

    def test_after_a_resubmit_the_orphans_webhook_counts_a_second_billed_task_once(
        self, engine: RecordingEngine, provider: FakeProvider
    ) -> None:
        provider.replies = ["drop"]
        job_id = make_job(engine)
        run_step(engine, "submit", job_id, seq=0)
        assert resubmit(engine, job_id).orphans == 1
        assert run_step(engine, "submit", job_id, seq=1).action == "next"
        assert job_of(engine, job_id).remote_task_id == "task_2"
        for _ in range(2):  # the provider's duplicate delivery counts nothing more
            assert self.deliver(engine, job_id, {"task_id": "task_1"}, claim=FIRST)[0] == 202
            on_webhook(engine, job_id, task_id="task_1", claim=FIRST)
        job = job_of(engine, job_id)
        assert (job.duplicate_spend, job.duplicate_remote_ids) == (1, ["task_1"])
        assert (job.remote_task_id, job.billing) == ("task_2", Billing.BILLED)
        assert (provider.posts, provider.created) == (2, 2)

    def test_the_receiver_reads_through_the_store_and_opens_one_refetch_per_window(
        self, engine: RecordingEngine, provider: FakeProvider
    ) -> None:
        job_id = make_job(engine)
        run_step(engine, "submit", job_id, seq=0)
        body = {"task_id": "task_1", "status": "running"}
        assert self.deliver(engine, job_id, body)[1]["status"] == "accepted"
        assert self.deliver(engine, job_id, body)[1]["status"] == "coalesced"  # a replay
        assert len(self.hooks(engine)) == 1
        # Another body in the window: one trailing re-fetch, then nothing more.
        done = {"task_id": "task_1", "status": "succeeded"}
        assert self.deliver(engine, job_id, done)[1]["status"] == "accepted"
        assert self.deliver(engine, job_id, done)[1]["status"] == "coalesced"
        assert len(self.hooks(engine)) == 2
        assert provider.posts == 1

    def test_the_receiver_ignores_final_jobs_and_unknown_ones_without_a_gate(
        self, engine: RecordingEngine, provider: FakeProvider
    ) -> None:
        job_id = make_job(engine)
        assert engine.store.cancel(job_id)
        assert self.deliver(engine, job_id, {"task_id": "task_1"})[0] == 200
        assert self.deliver(engine, "rdj_nobody", {"task_id": "task_1"})[0] == 404
        gates = [f"rd:hookgate:{j}" for j in (job_id, "rdj_nobody")]
        assert engine.redis.exists(*gates) == 0  # nothing to re-fetch: no window opened
        found, opened = engine.store.read_gated(
            job_id, names=["alias"], gate="rd:hookgate:" + job_id, holder="x", window_ms=1000
        )
        assert found == {"state": "canceled", "alias": "default"} and not opened
        assert self.hooks(engine) == [] and provider.posts == 0
