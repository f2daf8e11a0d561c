"""Webhooks, the real thing: a Celery worker process, the ASGI receiver under uvicorn
(``worker.web.app.serve``) and the simulator sending real webhooks, duplicated, reordered or
dropped on request.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import redis

from config.settings import Settings, get_settings
from simulator import VIDEO_SHA256, video_sha256
from simulator.testing import SimulatorProcess
from tests.fleet import Fleet, point_this_process_at, wait_for, webhook_env
from tests.webhook_helpers import KEY, MODEL, SECRET, S
from worker.infra.redis_server import RedisServer, free_port
from worker.job.callback import callback_url_for, token_for
from worker.job.engine import reset_engine
from worker.job.record import Job, JobState
from worker.render.request import RenderRequest
from worker.render.validation import validate_request
from worker.web.receiver import MAX_BODY_BYTES


@dataclass
class Live:
    """What the integration tests use."""

    fleet: Fleet
    sim: SimulatorProcess
    redis: redis.Redis
    settings: Settings
    web_url: str

    def expect(self, seconds: int, duration: float) -> None:
        """Set the learned generation time, which decides when the safety poll comes."""
        self.redis.hset("rd:timing", f"{MODEL}:{seconds}", str(duration))

    def enqueue(self, *, seconds: int = 5, expected: float = 30.0) -> str:
        from tasks import enqueue_render

        self.expect(seconds, expected)  # no poll before the webhook in these tests
        return enqueue_render({"model": MODEL, "prompt": "a paper boat", "seconds": seconds})

    def job(self, job_id: str) -> Job:
        from tasks import get_job

        return get_job(job_id)

    def wait_state(self, job_id: str, state: JobState = S.DONE) -> Job:
        job: Job = wait_for(
            lambda: (j := self.job(job_id)).state in (state, S.FAILED, S.CANCELED) and j,
            what=f"{job_id} {state}",
        )
        assert job.state is state, (job.error_code, job.error_message)
        return job

    def wait_remote_done(self, task_id: str | None) -> None:
        """Wait until the simulator's task has finished generating."""
        url = f"{self.sim.root}/_sim/tasks/{task_id}"
        wait_for(lambda: httpx.get(url).json()["status"] == "succeeded", what=f"{task_id}")

    def counters(self) -> dict[str, int]:
        return {k: v for k, v in self.sim.stats().items() if isinstance(v, int)}

    def post(
        self, job_id: str, body: Any, *, token: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        token = token if token is not None else token_for(SECRET, job_id)
        return httpx.post(f"{self.web_url}/{job_id}/{token}", json=body, timeout=5.0, **kwargs)


@pytest.fixture(scope="module")
def live(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushall()  # nothing else runs now; the worker below must start clean
    sim = SimulatorProcess(gen_time_mean=0.3, gen_time_jitter=0.0, webhook_retry_base=0.2).start()
    web_port = free_port()
    env = webhook_env(redis_server.url, sim.url, web_port, tmp_path_factory.mktemp("renders"),
                      key=KEY, secret=SECRET)  # fmt: skip
    fleet = Fleet(env, tmp_path_factory.mktemp("logs"), concurrency=4, web=True)
    with pytest.MonkeyPatch.context() as monkeypatch:
        point_this_process_at(env, monkeypatch)
        try:
            fleet.start()
            yield Live(fleet, sim, client, get_settings(), f"http://127.0.0.1:{web_port}/hooks")
        finally:
            fleet.stop()
            sim.stop()
            client.flushall()
            client.close()
            get_settings.cache_clear()
            reset_engine()
    get_settings.cache_clear()
    reset_engine()


@pytest.fixture
def sim_knobs(live: Live) -> Iterator[Callable[..., None]]:
    """Change simulator knobs for one test; the defaults come back afterwards."""
    defaults = {
        "webhooks": True,
        "webhook_duplicates": 1,
        "webhook_reorder": False,
        "webhook_drop_rate": 0.0,
    }

    def configure(**knobs: Any) -> None:
        live.sim.configure(**knobs)

    yield configure
    # Deliveries still planned would see the next test's knobs: let them pass first.
    wait_for(lambda: live.sim.stats()["webhooks_pending"] == 0, what="planned webhooks")
    live.sim.configure(**defaults)


def test_a_job_finishes_by_its_webhook_without_a_single_poll(live: Live) -> None:
    before = live.counters()
    job_id = live.enqueue()
    job = live.wait_state(job_id)
    assert job.poll_count == 0
    assert job.sha256 == VIDEO_SHA256
    debug = httpx.get(f"{live.sim.root}/_sim/tasks/{job.remote_task_id}").json()
    assert debug["has_callback"] is True and debug["idempotency_key"] == job_id
    after = live.counters()
    assert after["webhooks_sent"] - before["webhooks_sent"] == 1
    assert after["downloads"] - before["downloads"] == 1
    assert token_for(SECRET, job_id) not in live.fleet.log_text()  # nor in any log line


def test_a_webhook_job_costs_exactly_one_provider_get(live: Live) -> None:
    before = live.counters()
    ids = [live.enqueue() for _ in range(4)]
    for job_id in ids:
        assert live.wait_state(job_id).poll_count == 0
    after = live.counters()
    # The verifying fetch is the only GET: the download uses the url it returned.
    assert after["polls"] - before["polls"] == len(ids)
    assert after["downloads"] - before["downloads"] == len(ids)


def test_the_receiver_answers_bad_deliveries_as_specified_and_changes_nothing(live: Live) -> None:
    job_id = live.enqueue()
    job = live.wait_state(job_id)
    assert live.post(job_id, {"task_id": job.remote_task_id}, token="0" * 64).status_code == 404
    unknown = "rdj_" + "f" * 32
    assert live.post(unknown, {"task_id": job.remote_task_id}).status_code == 404
    oversized = {"task_id": job.remote_task_id, "pad": "x" * (MAX_BODY_BYTES + 1)}
    assert live.post(job_id, oversized).status_code == 413
    text = httpx.post(
        f"{live.web_url}/{job_id}/{token_for(SECRET, job_id)}",
        content=b"task_id=x",
        headers={"Content-Type": "text/plain"},
    )
    assert text.status_code == 415
    assert httpx.get(live.web_url.rsplit("/", 1)[0] + "/healthz").json() == {"ok": True}
    assert live.job(job_id).times == job.times  # nothing moved


class _ForgedServer(ThreadingHTTPServer):
    hits: int = 0


class _CountingHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.hits += 1  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.end_headers()
        self.wfile.write(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 64)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_forged_body_moves_the_job_only_as_far_as_the_provider_says_and_its_url_is_never_fetched(
    live: Live, sim_knobs: Callable[..., None]
) -> None:
    sim_knobs(webhooks=False)  # the only webhook this job gets is the forged one
    forged = _ForgedServer(("127.0.0.1", 0), _CountingHandler)
    threading.Thread(target=forged.serve_forever, daemon=True).start()
    try:
        job_id = live.enqueue()
        job = wait_for(lambda: (j := live.job(job_id)).remote_task_id and j, what="submitted")
        remote = job.remote_task_id
        live.wait_remote_done(remote)
        evil_url = f"http://127.0.0.1:{forged.server_port}/evil.mp4"
        body = {"task_id": remote, "status": "succeeded", "url": evil_url}
        assert live.post(job_id, body).status_code == 202
        job = live.wait_state(job_id)
    finally:
        forged.shutdown()
        forged.server_close()
    assert forged.hits == 0
    assert job.poll_count == 0  # the forged webhook's nudge did move it, by the API's answer
    assert job.sha256 == VIDEO_SHA256


def test_a_forged_body_naming_another_task_moves_nothing(
    live: Live, sim_knobs: Callable[..., None]
) -> None:
    sim_knobs(webhooks=False)
    job_id = live.enqueue()
    remote = wait_for(lambda: live.job(job_id).remote_task_id, what="submitted")
    before = live.counters()
    body = {"task_id": "task_" + "0" * 24, "status": "succeeded", "url": "http://127.0.0.1:9/x.mp4"}
    reply = live.post(job_id, body)  # a job submitted once owns only its recorded task
    assert (reply.status_code, reply.json()["status"]) == (200, "ignored")
    assert live.counters()["not_found"] == before["not_found"]  # no re-fetch was spent
    job = live.job(job_id)
    assert job.state in (S.SUBMITTED, S.RUNNING) and job.duplicate_spend == 0
    assert live.counters()["downloads"] == before["downloads"]
    # The genuine delivery still works afterwards.
    live.wait_remote_done(remote)
    assert live.post(job_id, {"task_id": remote}).status_code == 202
    assert live.wait_state(job_id).remote_task_id == remote


def test_three_concurrent_copies_of_a_webhook_make_one_transition_and_one_download(
    live: Live, sim_knobs: Callable[..., None]
) -> None:
    sim_knobs(webhook_duplicates=3)
    before = live.counters()
    job_id = live.enqueue()
    job = live.wait_state(job_id)
    wait_for(
        lambda: live.counters()["webhooks_sent"] - before["webhooks_sent"] == 3,
        what=f"3 copies {before} {live.counters()}",
    )
    after = live.counters()
    assert after["downloads"] - before["downloads"] == 1
    assert job.poll_count == 0
    assert len(live.fleet.log_lines(f"job {job_id} key=default state=generated")) == 1
    assert len(live.fleet.log_lines(f"job {job_id} key=default state=done")) == 1


def test_a_running_webhook_after_succeeded_changes_nothing(
    live: Live, sim_knobs: Callable[..., None]
) -> None:
    sim_knobs(webhook_reorder=True)
    before = live.counters()
    job_id = live.enqueue()
    live.wait_state(job_id)
    wait_for(
        lambda: live.counters()["webhooks_sent"] - before["webhooks_sent"] == 2, what="stale copy"
    )
    job = live.job(job_id)
    remote = job.remote_task_id
    answer = live.post(job_id, {"task_id": remote, "status": "running"})
    assert (answer.status_code, answer.json()["status"]) == (200, "ignored")
    assert live.job(job_id).times == job.times and job.state is S.DONE
    after = live.counters()
    assert after["downloads"] - before["downloads"] == 1
    assert after["webhooks_failed"] == before["webhooks_failed"]


def test_a_webhook_that_never_comes_is_replaced_by_the_safety_poll(
    live: Live, sim_knobs: Callable[..., None]
) -> None:
    sim_knobs(webhook_drop_rate=1.0)
    before = live.counters()
    job_id = live.enqueue(seconds=4, expected=0.3)  # safety poll after 1.5 s
    job = live.wait_state(job_id)
    assert job.poll_count == 1
    assert job.sha256 == video_sha256(4)  # the 4 s clip
    assert live.counters()["webhooks_dropped"] - before["webhooks_dropped"] == 1


def _post_to_provider(
    live: Live, job_id: str, *, idempotency_key: str | None, claim: int = 0
) -> str:
    request = RenderRequest.model_validate(live.job(job_id).request)
    body = request.to_body(callback_url=callback_url_for(live.settings, job_id, claim=claim))
    headers = {"Authorization": f"Bearer {KEY}"}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    answer = httpx.post(f"{live.sim.url}/video/generations", json=body, headers=headers)
    answer.raise_for_status()
    task_id: str = answer.json()["task_id"]
    return task_id


def test_a_job_whose_submit_reply_was_lost_adopts_its_task_from_the_webhook(live: Live) -> None:
    from tasks.api import new_job_id
    from worker.job.engine import get_engine

    store = get_engine().store
    job_id = new_job_id()
    request = validate_request({"model": MODEL, "prompt": "a lost reply", "seconds": 5})
    store.create(job_id, request=request.model_dump(mode="json"), alias="default", cost=0.7)
    # Intent written, POST sent, worker gone before the reply was recorded.
    store._change(job_id, states={S.QUEUED}, to=S.SUBMITTING,
                 set={"submit_attempts": 1, "submit_claim": 0, "billing": "pending",
                      "submit_intent_at": time.time()})  # fmt: skip
    live.expect(5, 30.0)
    task_id = _post_to_provider(live, job_id, idempotency_key=job_id)
    job = live.wait_state(job_id)
    assert job.remote_task_id == task_id
    assert job.adopted_from == "webhook"
    assert job.sha256 == VIDEO_SHA256


def test_a_second_submission_found_by_its_webhook_is_recorded_as_duplicate_spend(
    live: Live,
) -> None:
    from worker.job.engine import get_engine

    before = live.counters()
    live.sim.configure(gen_time_mean=3.0)  # the job's own task is still generating ...
    try:
        job_id = live.enqueue()
        wait_for(lambda: live.job(job_id).remote_task_id, what="the job's own task")
        # As after an operator's resubmit: the job counts a submission that may be billed,
        # made with claim 7 (its own claim is 0), whose URL the extra task's webhook uses.
        get_engine().store._change(job_id, states=None, incr={"orphans": 1},
                                  set={"orphan_claims": json.dumps({"7": time.time()})})  # fmt: skip
        live.sim.configure(gen_time_mean=0.3)  # ... when the second one's webhook comes
        extra = _post_to_provider(live, job_id, idempotency_key=None, claim=7)
        found = wait_for(lambda: (j := live.job(job_id)).duplicate_spend and j, what="spend")
    finally:
        live.sim.configure(gen_time_mean=0.3)
    assert found.duplicate_spend == 1
    assert found.duplicate_remote_ids == [extra]
    job = live.wait_state(job_id)
    assert job.remote_task_id != extra and job.sha256 == VIDEO_SHA256
    assert live.counters()["downloads"] - before["downloads"] == 1  # the extra is not fetched
    assert re.search(rf"job {job_id}: remote task {extra} is a second", live.fleet.log_text())


def test_a_webhook_for_a_finished_job_is_answered_without_work(live: Live) -> None:
    job_id = live.enqueue()
    job = live.wait_state(job_id)
    before = live.counters()
    extra = _post_to_provider(live, job_id, idempotency_key=None)
    live.wait_remote_done(extra)
    reply = live.post(job_id, {"task_id": extra, "status": "succeeded"})
    assert reply.status_code == 200 and reply.json()["status"] == "ignored"
    assert live.counters()["polls"] == before["polls"]  # no re-fetch spent the key's rate
    assert live.job(job_id).duplicate_spend == 0
    assert job.state is S.DONE
