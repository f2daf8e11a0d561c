"""HTTP 408 and 409 are transient: a bounded retry, and for a submit the ambiguous policy.

A submit answered 408 or 409 may have created the task (the request reached the
provider), so it is never POSTed again blindly: the job goes to ``submit_unknown``. A poll
or a clip download answered 408 or 409 is retried, at most ``max_transient_retries``
times. Driven through the worker steps against a provider faked with MockTransport.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from config.settings import load_settings
from tests.pipeline_helpers import RecordingEngine, make_engine, make_job
from worker.infra.redis_server import RedisServer
from worker.job import pipeline
from worker.job.record import Billing, JobState
from worker.provider.client import ApiClient

KEY = "sk-test-security-transient"
S = JobState


class Answers:
    """A provider that answers every call with ``status``; counts calls by method."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.calls: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request.method)
        return httpx.Response(self.status, json={"error": {"message": "try again"}})


def _engine(redis_server: RedisServer, tmp_path: Path, answers: Answers) -> RecordingEngine:
    url = redis_server.url.rsplit("/", 1)[0] + "/3"
    redis.Redis.from_url(url).flushdb()
    settings = load_settings(
        redis_url=url, api_key=KEY, base_url="https://provider.test/v1",
        output_dir=tmp_path / "renders", max_transient_retries=2, metrics_port=0,
    )  # fmt: skip
    eng = make_engine(settings)
    eng.client.close()
    eng.client = ApiClient(base_url=settings.base_url, transport=httpx.MockTransport(answers))
    return eng


@pytest.fixture(params=[408, 409], ids=["408", "409"])
def answered(
    request: pytest.FixtureRequest, redis_server: RedisServer, tmp_path: Path
) -> Iterator[tuple[RecordingEngine, Answers]]:
    answers = Answers(request.param)
    eng = _engine(redis_server, tmp_path, answers)
    yield eng, answers
    eng.close()


def test_a_submit_answered_408_or_409_is_ambiguous_and_never_posted_again(
    answered: tuple[RecordingEngine, Answers],
) -> None:
    engine, answers = answered
    job_id = make_job(engine)
    outcome = pipeline.submit(engine, job_id, seq=0)
    job = engine.store.get(job_id)
    assert job is not None
    assert outcome.action == "stop"
    assert (job.state, job.billing) == (S.SUBMIT_UNKNOWN, Billing.UNKNOWN)
    assert "retryable_status" in (job.error_message or "")
    assert answers.calls == ["POST"]  # one request; no blind second POST
    assert pipeline.submit(engine, job_id, seq=0).action == "stop"
    assert answers.calls == ["POST"]


def test_a_poll_answered_408_or_409_is_retried_a_bounded_number_of_times(
    answered: tuple[RecordingEngine, Answers],
) -> None:
    engine, answers = answered
    job_id = make_job(engine)
    engine.store._change(job_id, states=None, to=S.SUBMITTED, set={"remote_task_id": "task_1"})
    n, attempt = 0, 0
    outcomes = []
    for _ in range(10):  # bounded: max_transient_retries is 2
        engine.store._change(job_id, states=None, due=0.0)
        outcome = pipeline.poll(engine, job_id, seq=0, n=n, attempt=attempt)
        outcomes.append(outcome.action)
        if outcome.action != "again":
            break
        n, attempt = outcome.kwargs.get("n", n), outcome.kwargs.get("attempt", attempt)
    job = engine.store.get(job_id)
    assert job is not None
    assert outcomes == ["again", "again", "stop"]
    assert answers.calls == ["GET"] * 3
    assert job.state is S.FAILED and job.error_code == "retryable_status"
