"""Money safety, step by step: never pay twice, never lose a task id, money follows billing.

Each test drives the real steps against a real redis-server and the simulator over real
HTTP, with the fault that makes the case: a reply dropped after the task was created, a
reply trickled so that something else happens mid-POST, a broker that refuses a message.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulator.testing import SimulatorProcess
from tests.pipeline_engine import pipeline_engine
from tests.pipeline_helpers import RecordingEngine, drive, make_job, run_step
from worker.batch import Batches, parse_records
from worker.job import pipeline
from worker.job.record import Billing, JobState
from worker.job.submit import SubmitRefused, resubmit
from worker.job.sweeper import sweep

KEY = "sk-test-money-key"
S = JobState


@pytest.fixture
def engine(redis_url: str, sim: SimulatorProcess, tmp_path: Path) -> Iterator[RecordingEngine]:
    # The pipeline's engine, with the default probe interval and a short hold and grace.
    yield from pipeline_engine(redis_url, sim, tmp_path, key=KEY, pause_probe_seconds=300,
                               submit_unknown_hold_seconds=30, step_grace_seconds=5)  # fmt: skip


def in_thread(target: object, *args: object, **kwargs: object) -> tuple[threading.Thread, list]:
    result: list = []
    thread = threading.Thread(target=lambda: result.append(target(*args, **kwargs)))  # type: ignore[operator]
    thread.start()
    return thread, result


def wait_state(engine: RecordingEngine, job_id: str, state: JobState) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        job = engine.store.get(job_id)
        if job is not None and job.state is state:
            return
        time.sleep(0.01)
    raise AssertionError(f"{job_id} never reached {state}")


# The ambiguous submission -------------------------------------------------------------------


def test_a_dropped_reply_leaves_the_job_unknown_with_its_slot_and_the_evidence(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    sim.configure(drop_reply_every=1)
    job_id = make_job(engine)
    assert run_step(engine, "submit", job_id, seq=0).action == "stop"
    job = engine.store.get(job_id)
    assert job is not None
    assert (job.state, job.billing, job.remote_task_id) == (S.SUBMIT_UNKNOWN, Billing.UNKNOWN, None)
    assert "transport" in (job.error_message or "")  # the evidence: the connection dropped
    assert engine.limits.holds("default", job_id)  # its task, if it exists, is generating
    assert job.summary()["possibly_billed"] == 1
    sweep(engine, grace=0.0)
    assert engine.store.get(job_id).state is S.SUBMIT_UNKNOWN  # type: ignore[union-attr]
    assert sim.stats()["submissions"] == 1


def test_an_unknown_job_gives_its_slot_back_only_after_the_hold(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    sim.configure(drop_reply_every=1)
    engine.settings = engine.settings.model_copy(
        update={"max_concurrency": 1, "submit_unknown_hold_seconds": 0.5}
    )
    unknown, waiting = make_job(engine), make_job(engine)
    run_step(engine, "submit", unknown, seq=0)
    assert run_step(engine, "submit", waiting, seq=0).action == "stop"
    sweep(engine, grace=0.0)
    assert engine.limits.holds("default", unknown)  # within the hold: the slot stays
    time.sleep(0.6)
    report = sweep(engine, grace=0.0)
    assert unknown in report.freed
    assert engine.limits.holds("default", waiting)
    assert ("relaydance.submit", (waiting, 0, 0), None) in engine.sent  # it goes on now
    job = engine.store.get(unknown)
    assert job is not None and job.state is S.SUBMIT_UNKNOWN and job.next_due is None
    assert engine.store.in_state(S.SUBMIT_UNKNOWN) == [unknown]


def test_a_worker_killed_mid_post_leaves_the_job_unknown_never_posted_again(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    job_id = make_job(engine)
    # What a killed worker leaves: the claim written, billing pending, no reply recorded.
    engine.store._change(
        job_id, states={S.QUEUED}, to=S.SUBMITTING, set={"billing": "pending", "submit_claim": 0}
    )
    engine.limits.acquire("default", job_id, limit=10)
    engine.store._change(job_id, states=None, due=0.0)
    report = sweep(engine, grace=0.0)
    assert report.unknown == [job_id] and report.resumed == []
    job = engine.store.get(job_id)
    assert job is not None and job.state is S.SUBMIT_UNKNOWN
    assert "worker stopped during the POST" in (job.error_message or "")
    assert sim.stats()["submissions"] == 0


def test_an_attempt_that_provably_never_left_is_resumed_not_left_unknown(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    job_id = make_job(engine)
    # A connect error was answered (billing none) but the retry message was lost.
    engine.store._change(
        job_id, states={S.QUEUED}, to=S.SUBMITTING, set={"billing": "none", "submit_claim": 0}
    )
    engine.store._change(job_id, states=None, due=0.0)
    assert sweep(engine, grace=0.0).resumed == [job_id]
    assert drive(engine, job_id).state is S.DONE
    assert sim.stats()["submissions"] == 1


def test_resubmit_is_the_operators_knowing_second_payment(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    sim.configure(drop_reply_every=1)
    job_id = make_job(engine)
    run_step(engine, "submit", job_id, seq=0)
    sim.configure(drop_reply_every=0)
    job = resubmit(engine, job_id)
    assert (job.state, job.seq, job.orphans) == (S.WAITING_FOR_SLOT, 1, 1)
    assert ("relaydance.submit", (job_id, 1, 0), None) in engine.sent  # its submit, at seq 1
    assert run_step(engine, "submit", job_id, seq=0).action == "stop"  # old messages are stale
    done = drive(engine, job_id)
    assert done.state is S.DONE
    assert done.summary()["possibly_billed"] == 1  # the first task, if it exists
    stats = sim.stats()
    assert stats["submissions"] == 2 and stats["paid_twice"] == 1
    with pytest.raises(SubmitRefused, match="only a job in submit_unknown"):
        resubmit(engine, job_id)


# Claims only move forward ------------------------------------------------------------------


def test_an_older_submit_message_arriving_mid_post_makes_no_second_post(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    sim.configure(trickle_seconds=1.0)  # the POST takes a second
    job_id = make_job(engine)
    thread, result = in_thread(run_step, engine, "submit", job_id, seq=0, attempt=1)
    wait_state(engine, job_id, S.SUBMITTING)
    late = run_step(engine, "submit", job_id, seq=0, attempt=0)  # a delayed older message
    duplicate = run_step(engine, "submit", job_id, seq=0, attempt=1)  # redelivered copy
    thread.join(timeout=20)
    assert (late.action, duplicate.action, result[0].action) == ("stop", "stop", "next")
    assert sim.stats()["submissions"] == 1
    job = engine.store.get(job_id)
    assert job is not None and job.state is S.SUBMITTED and job.billing is Billing.BILLED


def test_cancel_during_a_post_keeps_the_task_id_and_says_it_may_be_billed(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    sim.configure(trickle_seconds=1.0, gen_time_mean=0.5)
    job_id = make_job(engine)
    thread, result = in_thread(run_step, engine, "submit", job_id, seq=0)
    wait_state(engine, job_id, S.SUBMITTING)
    assert pipeline.cancel(engine, job_id)
    thread.join(timeout=20)
    assert result[0].action == "stop"
    job = engine.store.get(job_id)
    assert job is not None and job.state is S.CANCELED
    assert job.remote_task_id and job.remote_task_id.startswith("task_")
    assert job.billing is Billing.BILLED
    # The task generates on at the provider: the slot is held until it is final.
    assert engine.limits.holds("default", job_id)
    time.sleep(0.6)
    assert job_id in sweep(engine, grace=0.0).freed


# Enqueue is all or nothing ------------------------------------------------------------------


def test_a_step_waits_for_the_producers_confirmation_and_never_runs_an_abandoned_job(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    request = {"model": "doubao-seedance-2-0-fast-260128", "prompt": "a boat"}
    from worker.render.validation import validate_request

    job_id = engine.store.create_render(validate_request(request), alias="default", pending=True)
    assert run_step(engine, "submit", job_id, seq=0).action == "again"  # not confirmed yet
    assert engine.store.abandon(job_id, reason="enqueue failed: OperationalError")
    assert run_step(engine, "submit", job_id, seq=0).action == "stop"
    job = engine.store.get(job_id)
    assert job is not None and (job.state, job.error_code) == (S.CANCELED, "enqueue_failed")
    assert engine.store.confirm_pending([job_id], due=0) == [
        "canceled"
    ]  # too late: the producer raised
    assert sim.stats()["submissions"] == 0


def test_the_sweeper_cancels_a_job_whose_producer_never_confirmed_it(
    engine: RecordingEngine,
) -> None:
    from worker.render.validation import validate_request

    request = validate_request({"model": "doubao-seedance-2-0-fast-260128", "prompt": "x"})
    job_id = engine.store.create_render(request, alias="default", pending=True, due_in=0)
    sweep(engine, grace=0.0)
    assert engine.store.get(job_id).state is S.QUEUED  # type: ignore[union-attr]  # in grace
    # The producer died before confirming, a minute ago.
    engine.redis.hset(engine.store.key(job_id), "created_at", repr(time.time() - 60))
    sweep(engine, grace=0.0)
    job = engine.store.get(job_id)
    assert job is not None and job.state is S.CANCELED and job.error_code == "enqueue_failed"


# Money follows billing ----------------------------------------------------------------------


def _batch_job(engine: RecordingEngine, budget: float) -> tuple[Batches, str, str]:
    batches = Batches(engine)
    fast = "doubao-seedance-2-0-fast-260128"
    sub = batches.submit(parse_records([{"model": fast, "prompt": "one"}]), budget=budget)
    (job_id,) = batches.job_ids(sub.batch_id).values()
    return batches, sub.batch_id, job_id


def test_a_job_billed_and_then_failed_keeps_its_reservation(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    engine.settings = engine.settings.model_copy(update={"download_max_bytes": 10})
    batches, batch_id, job_id = _batch_job(engine, budget=0.70)
    job = drive(engine, job_id)
    assert (job.state, job.error_code, job.billing) == (
        S.FAILED,
        "download_rejected",
        Billing.BILLED,
    )
    status = batches.status(batch_id)
    assert status.committed_usd == pytest.approx(0.70)  # billed: nothing to give back
    assert status.spent_usd == pytest.approx(0.70)
    again = batches.resume(batch_id)
    assert (again.enqueued, again.skipped_budget) == (0, 1)  # never past the budget
    assert sim.stats()["submissions"] == 1


def test_a_failed_generation_gives_its_reservation_back(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    sim.configure(failure_rate=1.0)
    batches, batch_id, job_id = _batch_job(engine, budget=0.70)
    job = drive(engine, job_id)
    assert (job.state, job.billing) == (S.FAILED, Billing.NOT_BILLED)
    status = batches.status(batch_id)
    assert (status.committed_usd, status.spent_usd) == (0.0, 0.0)


def test_an_unknown_submission_keeps_its_reservation_and_shows_as_possibly_billed(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    sim.configure(drop_reply_every=1)
    batches, batch_id, job_id = _batch_job(engine, budget=0.70)
    drive(engine, job_id)
    assert pipeline.cancel(engine, job_id)  # the operator gives up on it
    status = batches.status(batch_id)
    assert status.committed_usd == pytest.approx(0.70)
    assert status.unknown_usd == pytest.approx(0.70)
    assert batches.status(batch_id).to_dict()["possibly_billed_usd"] == pytest.approx(0.70)


def test_a_429_teaches_the_cap_from_jobs_live_at_the_provider_only(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    sim.configure(concurrency_cap=2, gen_time_mean=5.0)
    jobs = [make_job(engine) for _ in range(4)]
    for job_id in jobs[:2]:
        assert run_step(engine, "submit", job_id, seq=0).action == "next"
    engine.limits.acquire("default", jobs[2], limit=10)  # granted, not yet POSTed: not live
    assert run_step(engine, "submit", jobs[3], seq=0).action == "stop"  # the 429
    assert engine.limits.effective_limit("default", limit=10) == 2  # the provider's cap
