"""Webhooks: the callback URL, the handler and the step, in this process.

These tests drive :func:`handle_webhook` and :func:`on_webhook` against a real redis-server
(its own database) and a provider faked with ``httpx.MockTransport``. A real fleet receiving
real webhooks is in test_webhooks_live.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from config.settings import load_settings
from tests.pipeline_helpers import RecordingEngine, make_engine, make_job
from tests.webhook_helpers import KEY, MODEL, SECRET, Provider, S, _hook, _in_doubt, _set
from worker.infra.redis_server import RedisServer
from worker.job import pipeline
from worker.job.callback import TOKEN_GRACE_SECONDS, token_for, verify_claim, verify_token
from worker.job.record import JobState
from worker.job.webhook import on_webhook
from worker.provider.client import ApiClient
from worker.web.app import create_web_app
from worker.web.receiver import MAX_BODY_BYTES

# Unit: handler and step in this process ------------------------------------------------


@pytest.fixture
def unit_redis(redis_server: RedisServer) -> str:
    """Database 1 of the session's redis-server, emptied (the fleet below uses db 0)."""
    url = redis_server.url.rsplit("/", 1)[0] + "/1"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


@pytest.fixture
def provider() -> Provider:
    return Provider()


@pytest.fixture
def engine(unit_redis: str, provider: Provider, tmp_path: Path) -> Iterator[RecordingEngine]:
    settings = load_settings(
        redis_url=unit_redis,
        api_key=KEY,
        base_url="https://provider.test/v1",
        webhook_base_url="https://app.example/hooks",
        webhook_secret=SECRET,
        output_dir=tmp_path / "renders",
        max_transient_retries=1,
    )
    eng = make_engine(settings)
    eng.client.close()
    eng.client = ApiClient(base_url=settings.base_url, transport=httpx.MockTransport(provider))
    yield eng
    eng.close()


def test_submit_puts_the_callback_url_in_the_request_metadata(engine: RecordingEngine) -> None:
    bodies: list[dict[str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json={"task_id": "task_1", "status": "submitted"})

    engine.client = ApiClient(
        base_url="https://provider.test/v1", transport=httpx.MockTransport(answer)
    )
    job_id = make_job(engine, seconds=5)
    assert pipeline.submit(engine, job_id, seq=0).action == "next"
    callback = bodies[0]["metadata"]["callback_url"]
    path, _, query = callback.partition("?")
    base, token = path.rsplit("/", 1)
    assert base == f"https://app.example/hooks/{job_id}" and verify_token(SECRET, job_id, token)
    # The query proves which submission (claim) the URL was made for.
    assert verify_claim(SECRET, job_id, query.removeprefix("c=")) == 0
    # Valid well past the poll deadline, and not a moment longer than a day after it.
    deadline = time.time() + engine.settings.poll_deadline_seconds
    assert deadline + TOKEN_GRACE_SECONDS - 60 < int(token.split(".")[1]) <= deadline + 86400
    assert "callback_url" not in bodies[0]


def test_a_forged_token_is_404_and_nothing_is_enqueued(engine: RecordingEngine) -> None:
    job_id = make_job(engine)
    _set(engine, job_id, S.SUBMITTED, remote_task_id="task_a")
    forged = token_for("another-secret", job_id)
    assert _hook(engine, job_id, {"task_id": "task_a"}, token=forged)[0] == 404
    assert _hook(engine, job_id, {"task_id": "task_a"}, token="x" * 64)[0] == 404
    assert (
        _hook(engine, job_id, {"task_id": "task_a"}, token=token_for(SECRET, "rdj_other"))[0] == 404
    )
    legacy = hmac.new(SECRET.encode(), job_id.encode(), hashlib.sha256).hexdigest()
    assert _hook(engine, job_id, {"task_id": "task_a"}, token=legacy)[0] == 404  # no expiry
    assert engine.sent == []
    assert engine.store.get(job_id).state is S.SUBMITTED  # type: ignore[union-attr]


def test_an_expired_token_is_410_and_nothing_is_enqueued(engine: RecordingEngine) -> None:
    job_id = make_job(engine)
    _set(engine, job_id, S.SUBMITTED, remote_task_id="task_a")
    stale = token_for(SECRET, job_id, expires=int(time.time()) - 1)
    assert _hook(engine, job_id, {"task_id": "task_a"}, token=stale)[0] == 410
    assert not verify_token(SECRET, job_id, stale)
    assert engine.sent == []


def test_a_webhook_for_an_unknown_job_is_404(engine: RecordingEngine) -> None:
    status, body = _hook(engine, "rdj_" + "0" * 32, {"task_id": "task_a"})
    assert (status, body["ok"]) == (404, False)
    assert engine.sent == []


def test_an_oversized_body_is_413_and_nothing_is_enqueued(engine: RecordingEngine) -> None:
    job_id = make_job(engine)
    _set(engine, job_id, S.SUBMITTED, remote_task_id="task_a")
    big = json.dumps({"task_id": "task_a", "pad": "x" * MAX_BODY_BYTES}).encode()
    assert _hook(engine, job_id, big)[0] == 413
    assert engine.sent == []


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b'{"task_id": "task_a"}', "text/plain", 415),
        (b'{"task_id": "task_a"}', "", 415),
        (b"task_id=task_a", "application/x-www-form-urlencoded", 415),
        (b'{"task_id": ', "application/json", 400),
        (b"\xff\xfe", "application/json", 400),
        (b'["task_a"]', "application/json", 400),
        (b'{"task_id": {"$ne": 1}}', "application/json", 400),
        (b'{"task_id": "../../files/x"}', "application/json", 400),
    ],
)
def test_a_body_that_is_not_a_json_task_is_refused(
    engine: RecordingEngine, body: bytes, content_type: str, status: int
) -> None:
    job_id = make_job(engine)
    _set(engine, job_id, S.SUBMITTED, remote_task_id="task_a")
    assert _hook(engine, job_id, body, content_type=content_type)[0] == status
    assert engine.sent == []


def test_a_valid_webhook_is_accepted_and_only_enqueues_the_webhook_task(
    engine: RecordingEngine, provider: Provider
) -> None:
    job_id = make_job(engine)
    _set(engine, job_id, S.SUBMITTED, remote_task_id="task_a")
    body = {"task_id": "task_a", "status": "succeeded", "url": "https://evil.test/x.mp4"}
    status, answer = _hook(engine, job_id, body, content_type="application/json; charset=utf-8")
    assert (status, answer["status"]) == (202, "accepted")
    assert engine.sent == [("relaydance.webhook", (job_id, "task_a", 0, None), None)]
    assert engine.store.get(job_id).state is S.SUBMITTED  # type: ignore[union-attr]
    assert provider.requests == []  # the handler itself never calls the provider


def test_duplicate_and_stale_webhooks_for_a_job_past_generation_are_ignored_without_a_task(
    engine: RecordingEngine,
) -> None:
    job_id = make_job(engine)
    for state in (S.GENERATED, S.DOWNLOADING, S.DONE):
        _set(engine, job_id, state, remote_task_id="task_a")
        for status in ("succeeded", "running"):
            code, answer = _hook(engine, job_id, {"task_id": "task_a", "status": status})
            assert (code, answer["status"]) == (200, "ignored")
    assert engine.sent == []


def test_with_webhooks_off_every_callback_is_404(unit_redis: str) -> None:
    eng = make_engine(load_settings(redis_url=unit_redis, api_key=KEY))
    job_id = make_job(eng)
    assert _hook(eng, job_id, {"task_id": "task_a"})[0] == 404
    assert eng.sent == []
    eng.close()


def test_the_asgi_app_routes_under_its_prefix_and_refuses_a_declared_oversized_body(
    engine: RecordingEngine,
) -> None:
    job_id = make_job(engine)
    _set(engine, job_id, S.SUBMITTED, remote_task_id="task_a")
    app = create_web_app(engine=lambda: engine, prefix="/rd/hooks")
    path = f"/rd/hooks/{job_id}/{token_for(SECRET, job_id)}"

    async def calls() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://web.test") as client:
            answers = [
                await client.post(path, json={"task_id": "task_a"}),
                await client.post(path.replace("/rd", ""), json={"task_id": "task_a"}),
                await client.get(path),
                await client.post(path, content=b"{}", headers={"Content-Length": str(10**9)}),
                await client.get("/healthz"),
            ]
        return [a.status_code for a in answers]

    assert asyncio.run(calls()) == [202, 404, 405, 413, 200]
    assert engine.sent == [("relaydance.webhook", (job_id, "task_a", 0, None), None)]


def test_the_step_moves_the_job_by_the_refetched_task_never_by_the_body(
    engine: RecordingEngine, provider: Provider
) -> None:
    job_id = make_job(engine)
    _set(engine, job_id, S.SUBMITTED, remote_task_id="task_a")
    provider.task("task_a", "running")
    # The body claimed success; the provider says running: the job only turns running.
    assert on_webhook(engine, job_id, task_id="task_a").action == "stop"
    job = engine.store.get(job_id)
    assert job is not None and job.state is S.RUNNING
    assert engine.sent == []
    (request,) = provider.requests
    assert request.url.path == "/v1/video/generations/task_a"
    assert request.headers["Authorization"] == f"Bearer {KEY}"

    provider.task("task_a", "succeeded")
    assert on_webhook(engine, job_id, task_id="task_a").action == "next"  # the download next
    job = engine.store.get(job_id)
    assert job is not None and job.state is S.GENERATED


def test_a_stale_webhook_after_generation_changes_nothing_and_fetches_nothing(
    engine: RecordingEngine, provider: Provider
) -> None:
    job_id = make_job(engine)
    _set(engine, job_id, S.GENERATED, remote_task_id="task_a")
    provider.task("task_a", "running")
    assert on_webhook(engine, job_id, task_id="task_a").action == "stop"
    assert on_webhook(engine, job_id, task_id=None).action == "stop"
    assert engine.store.get(job_id).state is S.GENERATED  # type: ignore[union-attr]
    assert provider.requests == [] and engine.sent == []


def test_a_job_with_no_remote_id_adopts_the_task_of_its_first_submission(
    engine: RecordingEngine, provider: Provider
) -> None:
    job_id = make_job(engine)
    # The worker died after the POST and before recording the task id.
    _in_doubt(engine, job_id)
    provider.task("task_first", "succeeded")
    assert on_webhook(engine, job_id, task_id="task_first", claim=0).action == "next"
    job = engine.store.get(job_id)
    assert job is not None
    assert (job.state, job.remote_task_id) == (S.GENERATED, "task_first")
    assert job.adopted_from == "webhook"
    assert {"submitted", "generated"} <= set(job.times)


def test_an_adopted_task_still_running_gets_a_poll_chain(
    engine: RecordingEngine, provider: Provider
) -> None:
    job_id = make_job(engine)
    _in_doubt(engine, job_id)
    provider.task("task_first", "running")
    assert on_webhook(engine, job_id, task_id="task_first", claim=0).action == "next"
    job = engine.store.get(job_id)
    assert job is not None and (job.state, job.remote_task_id) == (S.RUNNING, "task_first")
    assert job.next_due is not None and job.next_due > time.time() + 60  # the safety poll


@pytest.mark.parametrize(
    ("state", "fields", "task"),
    [
        (S.SUBMITTING, {"submit_attempts": 1}, ("task_x", "succeeded", "grok-imagine-video")),
        (S.SUBMITTING, {"submit_attempts": 1}, None),  # the provider does not know it
        (S.QUEUED, {}, ("task_x", "succeeded", MODEL)),  # never submitted
    ],
)
def test_a_task_that_cannot_be_the_jobs_submission_is_not_adopted(
    engine: RecordingEngine,
    provider: Provider,
    state: JobState,
    fields: dict[str, object],
    task: tuple[str, str, str] | None,
) -> None:
    job_id = make_job(engine)
    if state is not S.QUEUED:
        _set(engine, job_id, state, **fields)
    if task is not None:
        provider.task(task[0], task[1], model=task[2])
    assert on_webhook(engine, job_id, task_id="task_x").action == "stop"
    job = engine.store.get(job_id)
    assert job is not None and job.state is state and job.remote_task_id is None
    assert engine.sent == []


def test_a_second_billed_task_is_recorded_as_duplicate_spend_once(
    engine: RecordingEngine, provider: Provider
) -> None:
    job_id = make_job(engine)
    _set(engine, job_id, S.DONE, remote_task_id="task_a")
    provider.task("task_b", "succeeded")
    provider.task("task_c", "running")
    # It was resubmitted: its first submission (claim 0) may have made a task as well.
    engine.store._change(job_id, states={S.DONE}, incr={"orphans": 1},
                        set={"orphan_claims": json.dumps({"0": time.time()})})  # fmt: skip
    for _ in range(2):
        assert on_webhook(engine, job_id, task_id="task_b", claim=0).action == "stop"
    on_webhook(engine, job_id, task_id="task_c", claim=0)
    job = engine.store.get(job_id)
    assert job is not None
    assert (job.state, job.remote_task_id) == (S.DONE, "task_a")
    assert job.duplicate_spend == 2
    assert job.duplicate_remote_ids == ["task_b", "task_c"]
    assert engine.sent == []


def test_a_failed_extra_task_is_not_counted_as_spend(
    engine: RecordingEngine, provider: Provider
) -> None:
    job_id = make_job(engine)
    _set(engine, job_id, S.RUNNING, remote_task_id="task_a")
    provider.task("task_b", "failed")
    on_webhook(engine, job_id, task_id="task_b")
    job = engine.store.get(job_id)
    assert job is not None and job.duplicate_spend == 0 and job.state is S.RUNNING


def test_a_provider_outage_during_the_refetch_retries_then_leaves_the_job_to_polling(
    engine: RecordingEngine, provider: Provider
) -> None:
    job_id = make_job(engine)
    _set(engine, job_id, S.SUBMITTED, remote_task_id="task_a")
    provider.fail_with = 503
    first = on_webhook(engine, job_id, task_id="task_a")
    assert first.action == "again" and first.kwargs == {"attempt": 1}
    assert on_webhook(engine, job_id, task_id="task_a", attempt=4).action == "stop"
    assert engine.store.get(job_id).state is S.SUBMITTED  # type: ignore[union-attr]
