"""The one enqueue protocol (worker/job/enqueue.py) for a single job and a batch's chunk:
records written pending, the message sent, then confirmed; a message that never left
cancels the jobs unsent. Against the session's redis-server, with an engine whose sends
are recorded (or refused), and no worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from config.settings import load_settings
from tests.batch_requests import req
from tests.pipeline_helpers import RecordingEngine, make_engine
from worker.batch import Batches, parse_records
from worker.errors import EnqueueFailed
from worker.infra.redis_server import RedisServer
from worker.job.enqueue import enqueue_jobs, new_job, write_pending
from worker.job.record import JobState, new_job_id
from worker.job.step import ENQUEUE_GRACE
from worker.job.sweeper import sweep


class RefusingEngine(RecordingEngine):
    """An engine whose broker refuses every message."""

    def send(self, name: str, *args: Any, countdown: float | None = None) -> None:
        raise ConnectionError("the broker is down")


@pytest.fixture
def engine(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingEngine]:
    url = redis_server.url[: -len("/0")] + "/3"
    redis.Redis.from_url(url).flushdb()
    monkeypatch.delenv("RELAYDANCE_PRICES", raising=False)
    fake = make_engine(load_settings(redis_url=url, api_key="sk-test"))
    yield fake
    fake.close()


def _new(engine: RecordingEngine) -> Any:
    return new_job(engine, new_job_id(), request=req("a boat"), alias="default", cost=0.7)


def test_a_batch_chunk_is_written_pending_sent_once_and_confirmed(
    engine: RecordingEngine,
) -> None:
    sub = Batches(engine).submit(parse_records([req(f"shot {n}") for n in range(3)]))
    job_ids = sorted(Batches(engine).job_ids(sub.batch_id).values())
    assert [name for name, _, _ in engine.sent] == ["relaydance.resume_many"]
    assert sorted(engine.sent[0][1][0]) == job_ids
    for job_id in job_ids:
        job = engine.store.get(job_id)
        assert job is not None and job.state is JobState.QUEUED and not job.enqueue_pending


def test_a_batch_whose_message_never_left_cancels_its_jobs_unsent_and_resumes_them(
    redis_server: RedisServer, engine: RecordingEngine
) -> None:
    refusing = make_engine(engine.settings, RefusingEngine)
    with pytest.raises(EnqueueFailed, match="run `relaydance batch resume rdb_"):
        Batches(refusing).submit(parse_records([req(f"shot {n}") for n in range(2)]), name="n1")
    batch_id = Batches(engine).store.resolve("n1")
    for job_id in Batches(engine).job_ids(batch_id).values():
        job = engine.store.get(job_id)
        assert job is not None and job.state is JobState.CANCELED
        assert job.error_code == "enqueue_failed"
    again = Batches(engine).resume(batch_id)  # the canceled lines are re-queued, once
    assert again.enqueued == 2
    assert [name for name, _, _ in engine.sent] == ["relaydance.resume_many"]
    refusing.close()


def test_a_single_job_whose_message_never_left_is_canceled_and_the_caller_told(
    engine: RecordingEngine,
) -> None:
    new = _new(engine)

    def refuse() -> None:
        raise ConnectionError("the broker is down")

    with pytest.raises(EnqueueFailed, match=f"job {new.id} was not enqueued"):
        enqueue_jobs(engine, [new], refuse)
    job = engine.store.get(new.id)
    assert job is not None and job.state is JobState.CANCELED


def test_a_pending_job_whose_producer_stopped_is_canceled_unsent_by_the_sweeper(
    engine: RecordingEngine,
) -> None:
    past = time.time() - ENQUEUE_GRACE - engine.settings.step_grace_seconds - 1
    new = new_job(engine, new_job_id(), request=req("a boat"), alias="default", cost=0.7,
                  now=past)  # fmt: skip
    write_pending(engine, [new], pipe=engine.redis.pipeline(transaction=False))
    sweep(engine)
    job = engine.store.get(new.id)
    assert job is not None and job.state is JobState.CANCELED and not engine.sent


def test_a_job_canceled_before_its_confirmation_fails_a_single_enqueue_not_a_batch(
    engine: RecordingEngine,
) -> None:
    def canceling(job_id: str) -> Callable[[], None]:
        def send() -> None:  # the job's batch is canceled while its message goes
            engine.store.cancel(job_id)

        return send

    single, chunk = _new(engine), [_new(engine), _new(engine)]
    with pytest.raises(EnqueueFailed, match="could not be confirmed"):
        enqueue_jobs(engine, [single], canceling(single.id))
    enqueue_jobs(engine, chunk, canceling(chunk[0].id), canceled_ok=True)
    states = [engine.store.get(new.id).state for new in chunk]  # type: ignore[union-attr]
    assert states == [JobState.CANCELED, JobState.QUEUED]
