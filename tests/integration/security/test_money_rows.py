"""Money rows against a real Redis: a forged or mistaken webhook cannot make a job in doubt
adopt a foreign task, a declared idempotency never reaches Kinovi and counts every extra
POST, a charged failure keeps its money, and a resubmit inside a budgeted batch reserves
its cost first. Each row would fail without its guard; docs/security.md lists them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from config.settings import load_settings
from tests.pipeline_helpers import RecordingEngine, make_engine, make_job
from worker.batch.parse import parse_records
from worker.batch.service import Batches
from worker.infra.redis_server import RedisServer
from worker.job import pipeline
from worker.job.callback import claim_proof, token_for
from worker.job.record import JobState
from worker.job.submit import SubmitRefused
from worker.job.webhook import on_webhook
from worker.provider.client import ApiClient
from worker.render.validation import validate_request
from worker.web.receiver import handle_webhook

SECRET = "money-webhook-secret-bmUaaYSRkhNY1WczSB3zaPH-sPHMvrti"
S = JobState
KIN = "seedance2-fast"


class Provider:
    """Kinovi's ``recordInfo`` (and a ``createTask`` that answers what ``submits`` says)."""

    def __init__(self) -> None:
        self.tasks: dict[str, dict[str, Any]] = {}
        self.posts = 0
        self.submits: list[httpx.Response] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            self.posts += 1
            return self.submits.pop(0) if self.submits else httpx.Response(200, json={
                "taskId": f"task_{self.posts}"})  # fmt: skip
        task = self.tasks.get(request.url.params.get("taskId", ""))
        if task is None:
            return httpx.Response(404, json={"message": "Task not found"})
        return httpx.Response(200, json=task)

    def task(self, task_id: str, *, created: float, state: str = "success",
             credits: int = 140) -> None:  # fmt: skip
        self.tasks[task_id] = {
            "taskId": task_id, "model": KIN, "status": state, "creditsUsed": credits,
            "createTime": int(created * 1000),
            "output": [{"url": f"https://cdn.kinovi.test/{task_id}.mp4"}] if state == "success"
            else [],
        }  # fmt: skip


@pytest.fixture
def provider() -> Provider:
    return Provider()


@pytest.fixture
def engine(redis_url: str, provider: Provider) -> Iterator[RecordingEngine]:
    settings = load_settings(
        redis_url=redis_url,
        api_keys=json.dumps({"kin": {"key": "kin-money-key", "provider": "kinovi",
                                     "base_url": "https://kinovi.test/api/v1"}}),
        webhook_base_url="https://app.example/hooks",
        webhook_secret=SECRET,
    )  # fmt: skip
    eng = make_engine(settings)
    eng.routes[("kinovi", "https://kinovi.test/api/v1")] = ApiClient(
        base_url="https://kinovi.test/api/v1", dialect="kinovi",
        transport=httpx.MockTransport(provider),
    )  # fmt: skip
    yield eng
    eng.close()


def kinovi_job(engine: RecordingEngine) -> str:
    request = validate_request({"model": KIN, "prompt": "a heron", "seconds": 5},
                               provider="kinovi")  # fmt: skip
    return engine.store.create_render(request, alias="kin")


def _in_doubt(engine: RecordingEngine, *, sent_at: float) -> str:
    job_id = kinovi_job(engine)
    engine.store._change(job_id, states=None, to=S.SUBMIT_UNKNOWN,
                        set={"submit_claim": 0, "billing": "unknown",
                             "submit_intent_at": sent_at})  # fmt: skip
    return job_id


def _deliver(engine: RecordingEngine, job_id: str, task_id: str, claim: str | None) -> int:
    body = json.dumps({"code": 200, "data": {"taskId": task_id, "state": "success"}}).encode()
    status, _ = handle_webhook(job_id, token_for(SECRET, job_id), body, "application/json",
                               claim=claim, engine=engine)  # fmt: skip
    return status


def test_a_task_created_outside_the_submissions_window_is_never_adopted(
    engine: RecordingEngine, provider: Provider
) -> None:
    job_id = _in_doubt(engine, sent_at=time.time())
    provider.task("task_foreign", created=time.time() - 3600)  # another job's, an hour ago
    assert _deliver(engine, job_id, "task_foreign", claim_proof(SECRET, job_id, 0)) == 202
    assert on_webhook(engine, job_id, task_id="task_foreign", claim=0).action == "stop"
    job = engine.store.get(job_id)
    assert job is not None and job.state is S.SUBMIT_UNKNOWN and job.remote_task_id is None
    # The control: the job's own task, created while its POST was out, is adopted.
    provider.task("task_own", created=time.time())
    assert on_webhook(engine, job_id, task_id="task_own", claim=0).action == "next"
    assert engine.store.get(job_id).remote_task_id == "task_own"  # type: ignore[union-attr]


def test_a_delivery_without_its_submissions_proof_adopts_nothing(
    engine: RecordingEngine, provider: Provider
) -> None:
    job_id = _in_doubt(engine, sent_at=time.time())
    provider.task("task_x", created=time.time())
    assert _deliver(engine, job_id, "task_x", claim=None) == 200  # ignored, nothing queued
    assert engine.sent == []
    assert on_webhook(engine, job_id, task_id="task_x").action == "stop"
    assert _deliver(engine, job_id, "task_x", claim="0." + "0" * 32) == 404  # forged proof
    # A genuine proof of an earlier submission of the job that is not in doubt (the job's
    # own is claim 0 here; a later claim than the record's would be one a failover lost).
    engine.store._change(job_id, states=None, set={"submit_claim": 7})
    assert on_webhook(engine, job_id, task_id="task_x", claim=3).action == "stop"
    assert engine.store.get(job_id).state is S.SUBMIT_UNKNOWN  # type: ignore[union-attr]
    assert not provider.tasks["task_x"].get("fetched")


def test_a_failed_task_that_was_charged_keeps_its_money(
    engine: RecordingEngine, provider: Provider
) -> None:
    job_id = kinovi_job(engine)
    engine.store._change(job_id, states=None, to=S.SUBMITTED,
                        set={"remote_task_id": "task_f", "billing": "billed"})  # fmt: skip
    provider.task("task_f", created=time.time(), state="fail", credits=140)
    engine.store._change(job_id, states=None, due=0.0)
    pipeline.poll(engine, job_id, seq=0)
    job = engine.store.get(job_id)
    assert job is not None and job.state is S.FAILED
    assert job.billing.value == "billed" and "billed" in (job.error_message or "")


def test_a_kinovi_gateway_502_is_never_posted_again_whatever_the_global_declaration(
    redis_url: str, provider: Provider
) -> None:
    settings = load_settings(
        redis_url=redis_url, provider_idempotent=True, api_key="sk-relaydance",
        api_keys=json.dumps({"kin": {"key": "kin-money-key", "provider": "kinovi",
                                     "base_url": "https://kinovi.test/api/v1"}}),
    )  # fmt: skip
    engine = make_engine(settings)
    engine.routes[("kinovi", "https://kinovi.test/api/v1")] = ApiClient(
        base_url="https://kinovi.test/api/v1", dialect="kinovi",
        transport=httpx.MockTransport(provider),
    )  # fmt: skip
    provider.submits = [httpx.Response(502, text="<html>502 Bad Gateway</html>")] * 3
    job_id = kinovi_job(engine)
    assert pipeline.submit(engine, job_id, seq=0).action == "stop"
    assert provider.posts == 1
    assert engine.store.get(job_id).state is S.SUBMIT_UNKNOWN  # type: ignore[union-attr]
    engine.close()


def test_a_declared_idempotent_retry_counts_the_earlier_post_as_a_possible_orphan(
    redis_url: str,
) -> None:
    answers = [httpx.Response(502, text="<html>502 Bad Gateway</html>"),
               httpx.Response(200, json={"task_id": "task_1", "status": "submitted"})]  # fmt: skip
    settings = load_settings(redis_url=redis_url, provider_idempotent=True, api_key="sk-rd")
    engine = make_engine(settings)
    engine.client = ApiClient(base_url="https://rd.test/v1",
                              transport=httpx.MockTransport(lambda r: answers.pop(0)))  # fmt: skip
    job_id = make_job(engine)
    again = pipeline.submit(engine, job_id, seq=0)
    assert again.action == "again"
    assert pipeline.submit(engine, job_id, seq=0, **again.kwargs).action == "next"
    job = engine.store.get(job_id)
    assert job is not None and job.orphans == 1 and len(job.orphan_claims) == 1
    assert job.remote_task_id == "task_1"
    engine.close()


def test_a_resubmit_in_a_budgeted_batch_reserves_its_cost_or_is_refused(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.api import jobs

    url = redis_server.url[: -len("/0")] + "/2"
    redis.Redis.from_url(url).flushdb()
    monkeypatch.delenv("RELAYDANCE_PRICES", raising=False)
    engine = make_engine(load_settings(redis_url=url, api_key="sk-test"))
    monkeypatch.setattr(jobs, "get_engine", lambda: engine)
    lines = [{"model": "doubao-seedance-2-0-fast-260128", "prompt": f"shot {n}", "seconds": 5}
             for n in range(2)]  # fmt: skip
    batches = Batches(engine)
    sub = batches.submit(parse_records(lines), budget=3 * 0.70)
    first, second = (batches.job_ids(sub.batch_id)[i] for i in (0, 1))
    for job_id in (first, second):
        engine.store._change(job_id, states=None, to=S.SUBMIT_UNKNOWN,
                            set={"billing": "unknown", "submit_intent_at": time.time()})  # fmt: skip
    jobs.resubmit(first)  # room for one more submission: reserved
    assert batches.status(sub.batch_id).committed_usd == pytest.approx(3 * 0.70)
    with pytest.raises(SubmitRefused, match="budget committed; raise it"):
        jobs.resubmit(second)
    assert engine.store.get(second).state is S.SUBMIT_UNKNOWN  # type: ignore[union-attr]
    assert batches.status(sub.batch_id).committed_usd == pytest.approx(3 * 0.70)
    # The resubmitted job is done, its orphan still possibly billed: within the budget.
    engine.store._change(first, states=None, to=S.DONE, set={"billing": "billed"})
    status = batches.status(sub.batch_id)
    assert status.spent_usd + status.unknown_usd <= 3 * 0.70 + 1e-9
    engine.close()
