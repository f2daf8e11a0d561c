"""The pipeline's steps against a real redis-server and the simulator over real HTTP: provider
faults, deadlines, lost replies, lost messages, broken downloads, the waiting line and cancel.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from simulator import VIDEO_SHA256
from simulator.testing import SimulatorProcess
from tests.pipeline_engine import _probe_now, pipeline_engine
from tests.pipeline_helpers import RecordingEngine, drive, make_job, run_step
from worker.job.record import JobState
from worker.job.sweeper import sweep


@pytest.fixture
def engine(redis_url: str, sim: SimulatorProcess, tmp_path: Path) -> Iterator[RecordingEngine]:
    yield from pipeline_engine(redis_url, sim, tmp_path)


def test_a_5xx_in_the_providers_json_on_submit_is_retried_behind_the_breaker_and_paid_once(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    sim.configure(error_5xx_rate=1.0)
    job_id = make_job(engine)
    job = drive(engine, job_id)
    # Refused before any work, in the provider's own words: not billed, so tried again
    # until the breaker opened; then the job waits in line, never submit_unknown.
    assert job.state is JobState.WAITING_FOR_SLOT
    assert job.billing.value == "none"
    # The breaker's threshold, then its probes (at most one per probe wait, here short).
    assert sim.stats()["errors_5xx"] >= engine.settings.breaker_failures
    assert engine.limits.breakers.state(engine.limits.route("default")) is not None
    sim.configure(error_5xx_rate=0.0)
    _probe_now(engine, job_id)
    job = drive(engine, job_id)
    assert job.state is JobState.DONE
    assert sim.stats()["submissions"] == 1
    assert engine.limits.breakers.state(engine.limits.route("default")) is None


def test_polls_wait_out_an_outage_and_the_job_finishes_after_it(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    job_id = make_job(engine)
    assert run_step(engine, "submit", job_id, seq=0).action == "next"
    sim.configure(outage=True)
    job = drive(engine, job_id, max_calls=30, settle=False)
    assert job.state in (JobState.SUBMITTED, JobState.RUNNING)  # waiting, not failed
    assert job.billing.value == "billed"
    during = sim.stats()["outage_requests"]
    breaker = engine.limits.breakers.state(engine.limits.route("default"))
    assert breaker is not None
    # The calls that opened the breaker, then only its probes (one at a time): no storm.
    assert during <= engine.settings.breaker_failures + breaker.probes + 1
    sim.configure(outage=False)
    assert drive(engine, job_id).state is JobState.DONE


def test_a_job_past_its_deadline_fails_and_others_finish(
    redis_url: str, engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    sim.configure(gen_time_mean=3.0)
    engine.settings = engine.settings.model_copy(update={"poll_deadline_seconds": 0.5})
    slow = drive(engine, make_job(engine))
    assert slow.state is JobState.FAILED
    assert slow.error_code == "deadline_exceeded"
    assert "RELAYDANCE_POLL_DEADLINE_SECONDS" in (slow.error_message or "")
    sim.configure(gen_time_mean=0.2)
    engine.settings = engine.settings.model_copy(update={"poll_deadline_seconds": 60})
    other = drive(engine, make_job(engine))
    assert other.state is JobState.DONE


def test_a_lost_reply_makes_the_job_unknown_and_no_second_task_is_created(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    # The provider creates the task but the answer is lost: the worker saw a 502.
    sim.configure(lost_response_rate=1.0)
    job_id = make_job(engine)
    assert run_step(engine, "submit", job_id, seq=0).action == "stop"
    job = engine.store.get(job_id)
    assert job is not None and job.state is JobState.SUBMIT_UNKNOWN
    assert job.remote_task_id is None and job.billing.value == "unknown"
    sim.configure(lost_response_rate=0.0)
    engine.store._change(job_id, states=None, due=0.0)
    sweep(engine, grace=0.0)  # the hold passes: the job waits for the operator, off schedule
    job = drive(engine, job_id)
    assert job.state is JobState.SUBMIT_UNKNOWN
    assert sim.stats()["submissions"] == 1


def test_a_provider_declared_idempotent_gets_the_same_key_again_after_a_lost_reply(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    engine.settings = engine.settings.model_copy(update={"provider_idempotent": True})
    sim.configure(lost_response_rate=1.0, honour_idempotency=True)
    job_id = make_job(engine)
    assert run_step(engine, "submit", job_id, seq=0).action == "again"
    sim.configure(lost_response_rate=0.0)
    # The worker dies here. The sweeper finds the step overdue and resumes the job.
    engine.store._change(job_id, states=None, due=0.0)
    report = sweep(engine, grace=0.0)
    assert job_id in report.resumed
    job = drive(engine, job_id)
    assert job.state is JobState.DONE
    stats = sim.stats()
    assert stats["submissions"] == 1
    assert stats["duplicates"] == 1


def test_the_sweeper_resumes_a_job_whose_poll_message_was_lost(engine: RecordingEngine) -> None:
    job_id = make_job(engine)
    assert run_step(engine, "submit", job_id, seq=0).action == "next"
    engine.store._change(job_id, states=None, due=1.0)  # long overdue: the message is gone
    report = sweep(engine, grace=0.0)
    assert report.resumed == [job_id]
    job = engine.store.get(job_id)
    assert job is not None and job.seq == 1
    # The old message is now stale; the resumed chain finishes the job.
    assert run_step(engine, "poll", job_id, seq=0, n=0).action == "stop"
    assert drive(engine, job_id).state is JobState.DONE


def test_the_sweeper_resumes_a_job_that_had_already_polled(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    sim.configure(gen_time_mean=1.0)
    job_id = make_job(engine)
    assert run_step(engine, "submit", job_id, seq=0).action == "next"

    time.sleep(0.25)
    assert run_step(engine, "poll", job_id, seq=0, n=0).action == "again"
    engine.store._change(job_id, states=None, due=1.0)  # the rescheduled poll was lost
    assert sweep(engine, grace=0.0).resumed == [job_id]
    # Its next poll, at the bumped seq, counting the poll it made; due now, it goes at once.
    resumed = [s for s in engine.sent if s[0] == "relaydance.poll"]
    assert resumed == [("relaydance.poll", (job_id, 1, 1, 0), None)]
    assert drive(engine, job_id).state is JobState.DONE


def test_a_download_after_a_killed_worker_removes_its_stale_partial_file(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    job_id = make_job(engine)
    out_dir = Path(engine.settings.output_dir)
    out_dir.mkdir(parents=True)
    partial = out_dir / f".{job_id}.abc123.part"
    partial.write_bytes(b"half a file")
    stale = time.time() - 60  # untouched for a minute: its writer is gone
    os.utime(partial, (stale, stale))
    job = drive(engine, job_id)
    assert job.state is JobState.DONE
    assert not partial.exists()
    assert sorted(p.name for p in out_dir.iterdir()) == [f"{job_id}.json", f"{job_id}.mp4"]


def test_a_download_never_deletes_a_temp_file_another_download_is_writing(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    job_id = make_job(engine)
    out_dir = Path(engine.settings.output_dir)
    out_dir.mkdir(parents=True)
    live = out_dir / f".{job_id}.other.part"
    live.write_bytes(b"bytes arriving right now")  # fresh: its download is alive
    job = drive(engine, job_id)
    assert job.state is JobState.DONE
    assert live.read_bytes() == b"bytes arriving right now"


class ExpiringOnce(httpx.BaseTransport):
    """Real HTTP, except that the first download answers 403 as an expired signed url does."""

    def __init__(self) -> None:
        self.real = httpx.HTTPTransport()
        self.refused = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.refused == 0:
            self.refused += 1
            return httpx.Response(403, text="expired")
        return self.real.handle_request(request)


def test_an_expired_download_url_is_refreshed_from_the_task(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    transport = ExpiringOnce()
    engine.downloads = httpx.Client(transport=transport)
    job_id = make_job(engine)
    job = drive(engine, job_id)
    assert job.state is JobState.DONE, job.error_message
    assert transport.refused == 1
    assert sim.stats()["downloads"] == 1
    # Each download attempt fetched the task afresh for its url: the expired one and the new.
    assert (
        json.loads(Path(job.output_path or "").with_suffix(".json").read_text())["sha256"]
        == VIDEO_SHA256
    )


def test_a_download_url_that_never_works_fails_clearly_without_the_signature(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    engine.downloads = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(404)))
    job = drive(engine, make_job(engine))
    assert job.state is JobState.FAILED
    assert job.error_code == "url_expired"
    assert "sig=" not in (job.error_message or "")


def test_a_job_refused_with_429_waits_at_the_head_of_the_line_and_submits_when_granted(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    sim.configure(concurrency_cap=1, gen_time_mean=0.3, retry_after=0.2)
    first, second = make_job(engine), make_job(engine)
    assert run_step(engine, "submit", first, seq=0).action == "next"
    refused = run_step(engine, "submit", second, seq=0)
    assert refused.action == "stop"
    job = engine.store.get(second)
    assert job is not None and job.state is JobState.WAITING_FOR_SLOT
    assert engine.limits.position("default", second) == 1
    assert engine.limits.effective_limit("default", limit=10) < 10
    assert [s[0] for s in engine.sent] == ["relaydance.grant"]
    # The first job finishes; its slot goes to the waiting job, whose submit is sent ...
    assert drive(engine, first).state is JobState.DONE
    assert ("relaydance.submit", (second, 1, 0), None) in engine.sent
    # ... at seq 1 (the 429 moved the job on), and it submits it. The refused message
    # itself is stale now: it can never POST again.
    assert run_step(engine, "submit", second, seq=0).action == "stop"
    time.sleep(0.25)  # the provider's Retry-After
    outcome = run_step(engine, "submit", second, seq=1)
    while outcome.action == "again":
        time.sleep(min(outcome.countdown, 0.3))
        outcome = run_step(engine, "submit", second, seq=1, **outcome.kwargs)
    assert outcome.action == "next"
    stats = sim.stats()
    assert stats["submissions"] == 2
    assert stats["rate_limited"] == 1


def test_cancel_stops_a_running_job(engine: RecordingEngine, sim: SimulatorProcess) -> None:
    sim.configure(gen_time_mean=5.0)
    job_id = make_job(engine)
    assert run_step(engine, "submit", job_id, seq=0).action == "next"
    assert engine.store.cancel(job_id)
    assert run_step(engine, "poll", job_id, seq=0, n=0).action == "stop"
    job = engine.store.get(job_id)
    assert job is not None and job.state is JobState.CANCELED


def test_cancel_takes_a_waiter_out_of_line_at_once(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    from worker.job import pipeline

    sim.configure(gen_time_mean=5.0)
    engine.settings = engine.settings.model_copy(update={"max_concurrency": 1})
    running, waiting, last = make_job(engine), make_job(engine), make_job(engine)
    assert run_step(engine, "submit", running, seq=0).action == "next"
    assert run_step(engine, "submit", waiting, seq=0).action == "stop"
    assert run_step(engine, "submit", last, seq=0).action == "stop"
    assert pipeline.cancel(engine, waiting)
    assert engine.limits.position("default", waiting) is None
    assert engine.limits.position("default", last) == 1
    assert not pipeline.cancel(engine, waiting)  # already final


def test_a_canceled_running_job_keeps_its_slot_until_its_task_is_final(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    from worker.job import pipeline

    sim.configure(gen_time_mean=1.0)
    engine.settings = engine.settings.model_copy(update={"max_concurrency": 1})
    running, last = make_job(engine), make_job(engine)
    assert run_step(engine, "submit", running, seq=0).action == "next"
    assert run_step(engine, "submit", last, seq=0).action == "stop"
    assert pipeline.cancel(engine, running)
    # The provider has no cancel: the task still generates and counts against the key.
    assert engine.limits.holds("default", running)
    sweep(engine, grace=0.0)
    assert engine.limits.holds("default", running) and not engine.limits.holds("default", last)
    time.sleep(1.2)  # the task finishes at the provider
    report = sweep(engine, grace=0.0)
    assert running in report.freed
    assert engine.limits.holds("default", last)
    assert ("relaydance.submit", (last, 0, 0), None) in engine.sent  # it goes on now
    job = engine.store.get(running)
    assert job is not None and job.billing.value == "billed"  # it may still be charged


def test_the_first_poll_is_scheduled_once_by_the_submission_and_the_chain_waits_for_it(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    from worker.job.advance import advance

    job_id = make_job(engine)
    outcome = run_step(engine, "submit", job_id, seq=0)
    job = engine.store.get(job_id)
    assert job is not None and job.next_due is not None
    # The submission's outcome carries the job as it left it: its recorded due time ...
    assert outcome.action == "next" and outcome.job is not None
    assert outcome.job.state is JobState.SUBMITTED
    assert abs(outcome.job.next_due - job.next_due) < 0.05  # type: ignore[operator]
    # ... which the poll sent next waits for, as does one sent from the record (a resume).
    assert advance(engine, outcome.job, after="submit") == "relaydance.poll"
    assert advance(engine, job) == "relaydance.poll"
    (_, args, first), (_, _, resumed) = engine.sent
    assert args == (job_id, 0, 0, 0)
    assert first is not None and resumed is not None
    assert 0 < resumed <= first <= job.next_due - job.updated_at
