"""on_done hears every final state, at least once, and a name no worker knows is reported."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu.exceptions import OperationalError

from config.celery import QUEUE
from config.settings import load_settings
from simulator.testing import SimulatorProcess
from tests.pipeline_helpers import RecordingEngine, drive, make_engine, make_job
from worker.batch import Batches, parse_records
from worker.infra.celery_app import app
from worker.infra.redis_server import free_port
from worker.job import pipeline
from worker.job.engine import Engine
from worker.job.explain import explain, facts_for
from worker.job.notify import OUTBOX_KEY, deliver_due, notify_final
from worker.job.record import JobState

KEY = "sk-test-notify-key"
TASK = "app.record_render"


def _settings(redis_url: str, sim: SimulatorProcess, tmp_path: Path) -> Any:
    return load_settings(
        redis_url=redis_url, api_key=KEY, base_url=sim.url, allow_local_urls=True,
        output_dir=tmp_path / "renders", poll_first_delay=0.2, poll_interval_min=0.1,
        poll_interval_max=0.3, max_transient_retries=1,
    )  # fmt: skip


@pytest.fixture
def engine(redis_url: str, sim: SimulatorProcess, tmp_path: Path) -> Iterator[RecordingEngine]:
    eng = make_engine(_settings(redis_url, sim, tmp_path))
    yield eng
    eng.close()


def _summaries(engine: RecordingEngine, name: str = TASK) -> list[dict[str, Any]]:
    return [args[0] for sent, args, _ in engine.sent if sent == name]


def test_on_done_hears_done_failed_and_canceled_with_state_error_and_dedupe_key(
    engine: RecordingEngine, sim: SimulatorProcess, task_registry: set[str]
) -> None:
    task_registry.add(TASK)
    engine.registered = task_registry.__contains__
    done = drive(engine, make_job(engine, on_done=TASK))
    sim.configure(failure_rate=1.0)
    failed = drive(engine, make_job(engine, on_done=TASK))
    canceled_id = make_job(engine, on_done=TASK)
    assert pipeline.cancel(engine, canceled_id)

    by_job = {s["job_id"]: s for s in _summaries(engine)}
    assert by_job[done.id]["state"] == "done" and by_job[done.id]["error_code"] is None
    assert by_job[failed.id]["state"] == "failed"
    assert by_job[failed.id]["error_code"] == "generation_failed"
    assert by_job[failed.id]["error_message"]
    assert by_job[canceled_id]["state"] == "canceled"
    for job_id, summary in by_job.items():
        assert summary["dedupe_key"] == f"{job_id}:{summary['state']}"
        job = engine.store.get(job_id)
        assert job is not None and job.on_done_status == "sent"
    assert len(_summaries(engine)) == 3  # once each
    assert engine.redis.zcard(OUTBOX_KEY) == 0


def test_a_second_notice_for_the_same_job_is_not_sent_again(
    engine: RecordingEngine, task_registry: set[str]
) -> None:
    task_registry.add(TASK)
    engine.registered = task_registry.__contains__
    job_id = make_job(engine, on_done=TASK)
    assert pipeline.cancel(engine, job_id)
    assert notify_final(engine, job_id) == "already sent"
    assert len(_summaries(engine)) == 1


def test_outside_a_worker_the_notice_is_handed_to_a_worker_that_knows_its_tasks(
    engine: RecordingEngine,
) -> None:
    job_id = make_job(engine, on_done=TASK)
    assert pipeline.cancel(engine, job_id)  # as `relaydance cancel` does, in the CLI process
    assert _summaries(engine) == []
    assert [args for name, args, _ in engine.sent if name == "relaydance.notify"] == [(job_id,)]
    assert engine.redis.zscore(OUTBOX_KEY, job_id) is not None  # until a worker sent it


def test_an_unregistered_on_done_is_reported_on_the_job_and_in_the_log_and_sent_once_known(
    engine: RecordingEngine, task_registry: set[str], caplog: pytest.LogCaptureFixture
) -> None:
    typo = "myapp.recrod_render"
    engine.registered = task_registry.__contains__
    job_id = make_job(engine, on_done=typo)
    with caplog.at_level(logging.ERROR, logger="worker.job.notify"):
        assert pipeline.cancel(engine, job_id)
    job = engine.store.get(job_id)
    assert job is not None
    assert job.on_done_status == "unregistered"
    error = job.on_done_error or ""
    assert typo in error and "-I" in error
    assert [r for r in caplog.records if typo in r.getMessage() and job_id in r.getMessage()]
    notes = explain(job, facts_for(engine, job)).notes
    assert any(typo in note and "unregistered" in note for note in notes)
    assert _summaries(engine, typo) == []

    task_registry.add(typo)  # a worker that knows the name started
    engine.redis.zadd(OUTBOX_KEY, {job_id: 0})
    assert deliver_due(engine) == [job_id]
    assert [s["job_id"] for s in _summaries(engine, typo)] == [job_id]


@pytest.fixture
def broker(redis_url: str) -> Iterator[str]:
    """The Celery app publishing to the test Redis; restored afterwards."""
    saved = app.conf.broker_url
    _use_broker(redis_url)
    yield redis_url
    _use_broker(saved)


def _use_broker(url: str) -> None:
    app.conf.broker_url = url
    app._pool = None
    app.amqp._producer_pool = None


def _queued(client: redis.Redis, name: str) -> list[dict[str, Any]]:
    """The bodies of the messages for task ``name`` waiting in the broker's queue."""
    bodies = []
    for raw in client.lrange(QUEUE, 0, -1):
        message = json.loads(raw)
        if message["headers"]["task"] == name:
            bodies.append(json.loads(base64.b64decode(message["body"])))
    return bodies


def test_a_notice_the_broker_refuses_is_retried_until_the_broker_takes_it(
    redis_url: str, sim: SimulatorProcess, tmp_path: Path, broker: str, task_registry: set[str]
) -> None:
    task_registry.add(TASK)
    engine = Engine.from_settings(
        _settings(redis_url, sim, tmp_path), registered=task_registry.__contains__
    )
    job_id = make_job(engine, on_done=TASK)
    _use_broker(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    assert pipeline.cancel(engine, job_id)
    job = engine.store.get(job_id)
    assert job is not None and job.state is JobState.CANCELED
    assert job.on_done_status == "retrying"
    assert engine.redis.zscore(OUTBOX_KEY, job_id) is not None
    assert deliver_due(engine) == []  # not due yet: retries back off

    _use_broker(broker)  # the broker is back
    engine.redis.zadd(OUTBOX_KEY, {job_id: 0})
    assert deliver_due(engine) == [job_id]
    [body] = _queued(engine.redis, TASK)
    args = body[0]
    assert args[0]["job_id"] == job_id and args[0]["state"] == "canceled"
    assert args[0]["dedupe_key"] == f"{job_id}:canceled"
    job = engine.store.get(job_id)
    assert job is not None and job.on_done_status == "sent"
    assert job.on_done_attempts == 2
    assert engine.redis.zscore(OUTBOX_KEY, job_id) is None
    engine.close()


class RefusingBroker(RecordingEngine):
    """The broker refuses the on_done message, as kombu does when Redis is unreachable."""

    def send(self, name: str, *args: Any, countdown: float | None = None, **_: Any) -> None:
        if name == TASK:
            raise OperationalError("Error 111 connecting to 127.0.0.1:1. Connection refused.")
        super().send(name, *args, countdown=countdown)


def test_a_broker_error_after_the_job_is_done_is_logged_and_never_fails_the_step(
    redis_url: str, sim: SimulatorProcess, tmp_path: Path, task_registry: set[str],
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    task_registry.add(TASK)
    engine = make_engine(_settings(redis_url, sim, tmp_path), RefusingBroker)
    engine.registered = task_registry.__contains__
    job_id = make_job(engine, on_done=TASK)
    with caplog.at_level(logging.WARNING, logger="worker.job.notify"):
        job = drive(engine, job_id)  # a step that raised would end this test here
    assert job.state is JobState.DONE  # the paid step is over: no retry may repeat it
    assert len(sim.tasks_for(job_id)) == 1
    assert job.on_done_status == "retrying"
    assert engine.redis.zscore(OUTBOX_KEY, job_id) is not None  # sent again later
    assert "not sent (OperationalError)" in caplog.text
    engine.close()


def test_a_batch_told_of_a_failed_job_settles_it_as_failed_and_never_reuses_it(
    engine: RecordingEngine,
) -> None:
    batches = Batches(engine)
    request = {"model": "doubao-seedance-2-0-fast-260128", "prompt": "a kite", "seconds": 5}
    sub = batches.submit(parse_records([request]))
    job_id = batches.job_ids(sub.batch_id)[0]
    engine.store.fail(job_id, code="generation_failed", message="refused")
    batches.job_done({"job_id": job_id, "state": "failed"})
    status = batches.status(sub.batch_id)
    assert status.counts.get("failed") == 1 and not status.counts.get("done")
    again = batches.submit(parse_records([request]), reuse=True)
    assert again.reused == 0
