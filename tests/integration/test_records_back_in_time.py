"""A job record that went back in time (a failover lost the primary's last writes) is in doubt.

Each test writes a record back to what a promoted replica could hold, then delivers what
the fleet still knows from before: a step message with a higher seq, a submit retry after
a claim the record lacks, the reply or the webhook of a submission the record lost. No
such job is submitted again: it waits in ``submit_unknown`` with the evidence, or adopts
the task its lost submission made. Real Redis; the provider is the simulator over HTTP,
or (for webhooks, which need a task of a known id) ``httpx.MockTransport``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from config.settings import load_settings
from simulator.testing import SimulatorProcess
from tests.pipeline_helpers import RecordingEngine, make_engine, make_job, run_step
from worker.job.callback import claim_proof, token_for
from worker.job.record import Billing, JobState
from worker.job.step import claim_number
from worker.job.submit import record_task
from worker.job.webhook import on_webhook
from worker.provider.client import ApiClient
from worker.web.receiver import handle_webhook

S = JobState
KEY = "sk-test-back-in-time"
SECRET = "back-in-time-webhook-secret-Gm4wQ9zLr2VtX7bKc1NpY8sHd3JfA6eU"
MODEL = "doubao-seedance-2-0-fast-260128"


@pytest.fixture
def engine(redis_url: str, sim: SimulatorProcess, tmp_path: Path) -> Iterator[RecordingEngine]:
    settings = load_settings(
        redis_url=redis_url, api_key=KEY, base_url=sim.url, allow_local_urls=True,
        output_dir=tmp_path / "renders", step_grace_seconds=5,
    )  # fmt: skip
    eng = make_engine(settings)
    yield eng
    eng.close()


def _waiting(engine: RecordingEngine, *, seq: int = 0) -> str:
    """A job back in line at ``seq``, as the record of a promoted replica may show it."""
    job_id = make_job(engine)
    engine.store._change(job_id, states=None, to=S.WAITING_FOR_SLOT, set={"seq": seq})
    return job_id


def test_a_message_above_the_records_seq_puts_the_job_in_doubt_and_posts_nothing(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    job_id = _waiting(engine, seq=3)
    engine.limits.acquire("default", "rdj_busy", limit=1)  # the key's one slot is taken
    assert engine.limits.acquire("default", job_id, limit=1).position == 1  # in line
    assert run_step(engine, "submit", job_id, seq=4).action == "stop"
    job = engine.store.get(job_id)
    assert job is not None and (job.state, job.billing) == (S.SUBMIT_UNKNOWN, Billing.UNKNOWN)
    assert "went back in time: a submit message at seq 4 found the record at seq 3" in (
        job.error_message or ""
    )
    assert engine.limits.holds("default", job_id)  # a task it may have counts at the provider
    assert sim.stats()["submissions"] == 0
    # A message below the record's seq is only stale: nothing changes.
    other = _waiting(engine, seq=3)
    assert run_step(engine, "submit", other, seq=2).action == "stop"
    assert engine.store.get(other).state is S.WAITING_FOR_SLOT  # type: ignore[union-attr]


def test_a_submit_retry_whose_earlier_claim_the_record_lacks_is_in_doubt(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    job_id = _waiting(engine)
    # Attempt 2 follows attempt 1's claim (its POST refused, in the provider's words), which
    # the record no longer has.
    assert run_step(engine, "submit", job_id, seq=0, attempt=2).action == "stop"
    job = engine.store.get(job_id)
    assert job is not None and job.state is S.SUBMIT_UNKNOWN
    assert "submit attempt 2 found no claim of attempt 1" in (job.error_message or "")
    assert sim.stats()["submissions"] == 0
    # The same retry with its claim on record submits as usual.
    kept = _waiting(engine)
    engine.store._change(kept, states=None, to=S.SUBMITTING,
                        set={"submit_claim": claim_number(0, 1), "billing": "none"})  # fmt: skip
    assert run_step(engine, "submit", kept, seq=0, attempt=2).action == "next"
    assert sim.stats()["submissions"] == 1


def test_a_reply_for_a_claim_the_record_lost_adopts_its_task(engine: RecordingEngine) -> None:
    job_id = _waiting(engine)
    job = engine.store.get(job_id)
    assert job is not None
    claim = claim_number(1, 0)  # a later chain's claim; the record is back before it
    assert record_task(engine, job, claim, task_id="task_lost", status="submitted").action == "next"
    found = engine.store.get(job_id)
    assert found is not None
    assert (found.state, found.remote_task_id, found.billing) == (
        S.SUBMITTED, "task_lost", Billing.BILLED)  # fmt: skip
    assert found.adopted_from == "late reply" and str(claim) in found.orphan_claims


class Provider:
    """Answers ``GET /video/generations/{id}`` for the tasks it was given."""

    def __init__(self) -> None:
        self.tasks: dict[str, dict[str, Any]] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        task_id = request.url.path.rsplit("/", 1)[-1]
        if task_id in self.tasks:
            return httpx.Response(200, json=self.tasks[task_id])
        return httpx.Response(404, json={"error": {"message": "no such task"}})


def test_a_webhook_through_a_lost_submissions_url_is_queued_and_its_task_adopted(
    redis_url: str, tmp_path: Path
) -> None:
    provider = Provider()
    settings = load_settings(
        redis_url=redis_url, api_key=KEY, base_url="https://provider.test/v1",
        webhook_base_url="https://app.example/hooks", webhook_secret=SECRET,
        output_dir=tmp_path / "renders",
    )  # fmt: skip
    engine = make_engine(settings)
    engine.client.close()
    engine.client = ApiClient(base_url=settings.base_url, transport=httpx.MockTransport(provider))
    try:
        job_id = _waiting(engine)
        claim = claim_number(2, 0)  # the submission the failover took from the record
        provider.tasks["task_lost"] = {"task_id": "task_lost", "status": "running",
                                       "model": MODEL, "seconds": "5"}  # fmt: skip
        body = b'{"task_id": "task_lost", "status": "running"}'
        status, reply = handle_webhook(
            job_id, token_for(SECRET, job_id), body, "application/json", engine=engine,
            claim=claim_proof(SECRET, job_id, claim),
        )  # fmt: skip
        assert (status, reply["status"]) == (202, "accepted")
        assert ("relaydance.webhook", (job_id, "task_lost", 0, claim), None) in engine.sent
        assert on_webhook(engine, job_id, task_id="task_lost", claim=claim).action == "next"
        job = engine.store.get(job_id)
        assert job is not None
        assert (job.state, job.remote_task_id) == (S.RUNNING, "task_lost")
        assert job.adopted_from == "webhook"
        # The webhook of a submission the record has (claim 0, a plain 429's) adopts nothing.
        other = _waiting(engine)
        engine.store._change(other, states=None, set={"submit_claim": 0})
        assert on_webhook(engine, other, task_id="task_lost", claim=0).action == "stop"
        assert engine.store.get(other).state is S.WAITING_FOR_SLOT  # type: ignore[union-attr]
    finally:
        engine.close()
