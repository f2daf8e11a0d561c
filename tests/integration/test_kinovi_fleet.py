"""One fleet, two providers: RelayDance and Kinovi aliases rendered at once by the same
workers against the simulator speaking both dialects, in polling and in webhook mode; and
what a Kinovi answer does to limits, failures and money."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from config.settings import get_settings, load_settings
from simulator.media import video_sha256
from simulator.testing import SimulatorProcess
from tasks import enqueue_render, get_job, wait
from tests.fleet import Fleet, fleet_env, wait_until
from tests.pipeline_helpers import RecordingEngine, drive, make_engine, run_step
from worker.infra.redis_server import RedisServer, free_port
from worker.job.callback import callback_url_for
from worker.job.record import Job, JobState
from worker.render.pricing import estimate_cost
from worker.render.validation import validate_request

pytestmark = pytest.mark.integration
RELAYDANCE_MODEL = "doubao-seedance-2-0-fast-260128"
KINOVI_KEY = "kin-fleet-key-0001"
STUDIO_KEY = "sk-fleet-studio-0001"
S = JobState

# Jobs of both providers, interleaved: (alias, request).
MIXED: list[tuple[str, dict[str, Any]]] = [
    ("studio", {"model": RELAYDANCE_MODEL, "prompt": "a lighthouse at dusk", "seconds": 5}),
    ("kin", {"model": "seedance-20", "prompt": "a fox in the snow", "seconds": 5}),
    ("studio", {"model": "seedance-1-5-pro-with-audio", "prompt": "@image1 turns its head",
                "images": ["https://example.com/cat.jpg"]}),
    ("kin", {"model": "seedance2-fast", "seconds": 4,
             "images": ["https://example.com/first.jpg", "https://example.com/last.jpg"]}),
    ("kin", {"model": "seedance-20", "mode": "reference", "upscale": "4k", "seconds": 6,
             "prompt": "@image1 dances like @video1", "images": ["https://example.com/a.jpg"],
             "videos": ["https://example.com/moves.mp4"]}),
]  # fmt: skip


def routes(sim: SimulatorProcess) -> str:
    return json.dumps({
        "studio": STUDIO_KEY,
        "kin": {"key": KINOVI_KEY, "provider": "kinovi", "base_url": sim.kinovi_url},
    })  # fmt: skip


def _remote(sim: SimulatorProcess, job: Job) -> dict[str, Any]:
    found: dict[str, Any] = httpx.get(f"{sim.root}/_sim/tasks/{job.remote_task_id}").json()
    return found


def _check_both_done(sim: SimulatorProcess, jobs: list[Job], fleet: Fleet) -> None:
    for (alias, request), job in zip(MIXED, jobs, strict=True):
        assert job.state is S.DONE, (alias, job.error_code, job.error_message, fleet.logs())
        # The simulator's clip lasts as long as the job asked.
        expected = video_sha256(int(job.request["seconds"]))
        assert hashlib.sha256(Path(job.output_path or "").read_bytes()).hexdigest() == expected
        remote = _remote(sim, job)
        assert remote["dialect"] == ("kinovi" if alias == "kin" else "relaydance")
        assert remote["idempotency_key"] == job.id
        if alias == "kin":
            # The spend is the provider's creditsUsed (x 1.5 here), not the estimate.
            estimate = estimate_cost(validate_request(request, provider="kinovi"))
            assert job.actual_cost == pytest.approx(estimate * 1.5)
        else:
            assert job.actual_cost is None  # RelayDance reports no spend: the estimate stands
    stats = sim.stats()
    assert stats["submissions"] == len(MIXED) and stats["paid_twice"] == 0
    assert sorted(stats["submissions_by_key"].values()) == [2, 3]


@pytest.fixture
def fresh(redis_server: RedisServer, sim: SimulatorProcess) -> SimulatorProcess:
    redis.Redis.from_url(redis_server.url).flushall()
    sim.configure(gen_time_mean=0.4, billed_factor=1.5)
    return sim


def test_one_fleet_polls_relaydance_and_kinovi_jobs_to_done_at_once(
    redis_server: RedisServer, fresh: SimulatorProcess, tmp_path: Path
) -> None:
    env = fleet_env(redis_url=redis_server.url, sim_url=fresh.url, output_dir=tmp_path / "out",
                    RELAYDANCE_API_KEYS=routes(fresh))  # fmt: skip
    (tmp_path / "logs").mkdir()
    fleet = Fleet(env, tmp_path / "logs", beat=True)
    with fleet.running():
        ids = [enqueue_render(request, key=alias) for alias, request in MIXED]
        jobs = [wait(i, timeout=90) for i in ids]
    _check_both_done(fresh, jobs, fleet)
    assert all(job.poll_count >= 1 for job in jobs)


def test_one_fleet_takes_both_providers_webhooks_and_never_polls(
    redis_server: RedisServer, fresh: SimulatorProcess, tmp_path: Path
) -> None:
    fresh.configure(webhooks=True, webhook_retry_base=0.2)
    port = free_port()
    env = fleet_env(
        redis_url=redis_server.url, sim_url=fresh.url, output_dir=tmp_path / "out",
        RELAYDANCE_API_KEYS=routes(fresh),
        RELAYDANCE_WEBHOOK_BASE_URL=f"http://127.0.0.1:{port}/hooks",
        RELAYDANCE_WEBHOOK_SECRET="fleet-kinovi-secret-K3lYj4KpS0iS35fvq0a3RROTopDaUGgi",
        RELAYDANCE_WEBHOOK_SAFETY_POLL_SECONDS="60",  # any poll would show as a poll_count
    )  # fmt: skip
    (tmp_path / "logs").mkdir()
    fleet = Fleet(env, tmp_path / "logs", web=True)
    with fleet.running():
        ids = [enqueue_render(request, key=alias) for alias, request in MIXED]
        jobs = [wait(i, timeout=90) for i in ids]
    _check_both_done(fresh, jobs, fleet)
    assert [job.poll_count for job in jobs] == [0] * len(MIXED)
    assert fresh.stats()["webhooks_sent"] == len(MIXED)


def test_a_kinovi_job_whose_worker_is_killed_mid_poll_finishes_once(
    redis_server: RedisServer, fresh: SimulatorProcess, tmp_path: Path
) -> None:
    fresh.configure(gen_time_mean=4.0)
    env = fleet_env(redis_url=redis_server.url, sim_url=fresh.url, output_dir=tmp_path / "out",
                    RELAYDANCE_API_KEYS=routes(fresh))  # fmt: skip
    (tmp_path / "logs").mkdir()
    fleet = Fleet(env, tmp_path / "logs", beat=True)
    with fleet.running():
        job_id = enqueue_render({"model": "seedance2-fast", "prompt": "slow"}, key="kin")
        # Between two polls: the first has been answered and the next one scheduled (a
        # poll in flight has its step due the step grace ahead, for the sweeper's sake).
        assert wait_until(lambda: between_polls(get_job(job_id)), timeout=30)
        fleet.kill_worker()  # its countdown message for the next poll dies with it
        fleet.start_worker()
        job = wait(job_id, timeout=60)
    assert job.state is S.DONE, (job.error_message, fleet.logs())
    assert job.seq >= 1  # the sweeper resumed it
    stats = fresh.stats()
    assert (stats["submissions"], stats["billed_tasks"], stats["paid_twice"]) == (1, 1, 0)


def between_polls(job: Job) -> bool:
    grace = get_settings().step_grace_seconds
    return job.poll_count >= 1 and (job.next_due or 0) < time.time() + grace / 2


# In this process: the steps against the simulator's Kinovi routes ------------------------


@pytest.fixture
def engine(redis_url: str, sim: SimulatorProcess, tmp_path: Path) -> Iterator[RecordingEngine]:
    settings = load_settings(
        redis_url=redis_url, base_url=sim.url, allow_local_urls=True,
        api_keys={"studio": STUDIO_KEY, "kin": {"key": KINOVI_KEY, "provider": "kinovi",
                                                "base_url": sim.kinovi_url}},
        output_dir=tmp_path / "renders", poll_first_delay=0.2, poll_interval_min=0.1,
        poll_interval_max=0.3, max_transient_retries=2,
    )  # fmt: skip
    eng = make_engine(settings)
    yield eng
    eng.close()


def test_each_alias_gets_the_client_of_its_provider_and_the_default_keeps_engine_client(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    assert engine.client_for("studio") is engine.client
    assert engine.client_for("default") is engine.client  # an unknown alias: the default
    kinovi = engine.client_for("kin")
    assert kinovi is engine.client_for("kin")  # one pooled client per provider and URL
    assert kinovi.dialect.name == "kinovi"
    assert repr(kinovi) == f"ApiClient(base_url={sim.kinovi_url!r}, dialect='kinovi')"


def kinovi_job(engine: RecordingEngine, **fields: Any) -> str:
    request = validate_request(
        {"model": "seedance-20", "prompt": "a heron", **fields}, provider="kinovi"
    )
    return engine.store.create_render(request, alias="kin")


def test_a_kinovi_429_feeds_the_same_per_key_limits(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    sim.configure(concurrency_cap=1, gen_time_mean=0.3, retry_after=0.2)
    first, second = kinovi_job(engine), kinovi_job(engine)
    assert run_step(engine, "submit", first, seq=0).action == "next"
    assert run_step(engine, "submit", second, seq=0).action == "stop"
    job = engine.store.get(second)
    assert job is not None and job.state is S.WAITING_FOR_SLOT and not job.remote_task_id
    assert engine.limits.position("kin", second) == 1  # at the head of its key's line
    assert engine.limits.effective_limit("kin", limit=10) == 1  # the cap Kinovi enforced
    assert engine.limits.effective_limit("studio", limit=10) == 10  # another key: untouched
    assert engine.limits.snapshot("kin", limit=10)["rate_limited_last_hour"] == 1
    assert drive(engine, first).state is S.DONE
    assert drive(engine, second).state is S.DONE
    stats = sim.stats()
    assert (stats["submissions"], stats["rate_limited"], stats["paid_twice"]) == (2, 1, 0)


def test_a_kinovi_job_records_and_counts_the_spend_kinovi_reports_not_the_estimate(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    sim.configure(billed_factor=2.0)
    job = drive(engine, kinovi_job(engine, seconds=5))  # estimated $1.00
    assert (job.state, job.cost, job.actual_cost) == (S.DONE, 1.0, 2.0)
    assert job.summary()["actual_cost"] == 2.0
    assert float(engine.redis.hget("rd:metrics", "spend_usd") or 0) == pytest.approx(2.0)
    manifest = json.loads(Path(job.output_path or "").with_suffix(".json").read_text())
    assert (manifest["estimated_cost_usd"], manifest["actual_cost_usd"]) == (1.0, 2.0)


def test_a_kinovi_policy_failure_ends_generation_failed_with_its_message_and_costs_nothing(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    sim.configure(failure_rate=1.0)
    job = drive(engine, kinovi_job(engine))
    assert job.state is S.FAILED
    assert job.error_code == "generation_failed"
    assert job.error_message == "Prompt flagged by content moderation (code 2038)"
    assert job.actual_cost == 0.0
    assert sim.stats()["billed_tasks"] == 0
    assert engine.limits.in_use("kin") == 0  # the slot went back at once


def test_a_kinovi_job_whose_submit_reply_was_lost_adopts_its_task_from_the_webhook(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    from worker.job.webhook import on_webhook
    from worker.web.receiver import handle_webhook

    engine.settings = engine.settings.model_copy(update={
        "webhook_base_url": "http://127.0.0.1:9/hooks",
        "webhook_secret": load_settings(webhook_secret="s-1-rT-KFJyEBhRidykjWUN14GNlXS87L2zu").webhook_secret,
    })  # fmt: skip
    job_id = kinovi_job(engine)
    # Intent written and the POST sent; the worker died before it read the reply.
    engine.store._change(job_id, states={S.QUEUED}, to=S.SUBMITTING,
                        set={"submit_attempts": 1, "submit_claim": 0, "billing": "pending",
                             "submit_intent_at": time.time()})  # fmt: skip
    request = validate_request(get_job_request(engine, job_id), provider="kinovi")
    callback = callback_url_for(engine.settings, job_id, claim=0) or ""
    body = request.to_body(callback_url=callback)
    task = engine.client_for("kin").submit(body, api_key=engine.settings.key_for("kin"))
    sim_task = httpx.get(f"{sim.root}/_sim/tasks/{task.task_id}").json()
    wait_until(lambda: httpx.get(f"{sim.root}/_sim/tasks/{task.task_id}").json()["status"]
               == "succeeded", timeout=10)  # fmt: skip
    # The provider's webhook, in Kinovi's envelope, at the job's callback URL.
    envelope = {"code": 200, "message": "success", "data": {"taskId": task.task_id,
                "state": "success", "model": "seedance-20"}}  # fmt: skip
    path, _, query = callback.partition("?")
    status, _ = handle_webhook(job_id, path.rsplit("/", 1)[1], json.dumps(envelope).encode(),
                               "application/json", claim=query.removeprefix("c="),
                               engine=engine)  # fmt: skip
    sent = ("relaydance.webhook", (job_id, task.task_id, 0, 0), None)
    assert status == 202 and engine.sent[-1] == sent
    assert on_webhook(engine, job_id, task_id=task.task_id, claim=0).action == "next"
    job = drive(engine, job_id)
    assert job.state is S.DONE and job.remote_task_id == task.task_id
    assert job.adopted_from == "webhook"
    assert sim_task["dialect"] == "kinovi"
    stats = sim.stats()
    assert (stats["submissions"], stats["paid_twice"]) == (1, 0)


def get_job_request(engine: RecordingEngine, job_id: str) -> dict[str, Any]:
    job = engine.store.get(job_id)
    assert job is not None
    return job.request


def test_a_dropped_kinovi_reply_leaves_the_job_unknown_and_it_never_posts_again(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    from worker.job.record import Billing
    from worker.job.sweeper import sweep

    sim.configure(drop_reply_every=1)  # Kinovi created the task; its answer never came back
    job_id = kinovi_job(engine)
    assert run_step(engine, "submit", job_id, seq=0).action == "stop"
    job = engine.store.get(job_id)
    assert job is not None
    assert (job.state, job.billing, job.remote_task_id) == (
        S.SUBMIT_UNKNOWN,
        Billing.UNKNOWN,
        None,
    )
    assert engine.limits.holds("kin", job_id)  # its task, if it exists, is generating
    sweep(engine, grace=0.0)
    assert engine.store.get(job_id).state is S.SUBMIT_UNKNOWN  # type: ignore[union-attr]
    stats = sim.stats()
    assert (stats["submissions"], stats["dropped_replies"], stats["paid_twice"]) == (1, 1, 0)
