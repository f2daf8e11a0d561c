"""The pipeline's steps against a real redis-server and the simulator over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from simulator import PNG_BYTES, VIDEO_SHA256
from simulator.testing import SimulatorProcess
from tests.pipeline_engine import KEY, _probe_now, _sha256, pipeline_engine
from tests.pipeline_helpers import RecordingEngine, drive, make_job, run_step
from worker.job.record import JobState
from worker.provider.client import ApiClient


@pytest.fixture
def engine(redis_url: str, sim: SimulatorProcess, tmp_path: Path) -> Iterator[RecordingEngine]:
    yield from pipeline_engine(redis_url, sim, tmp_path)


def test_text_to_video_renders_the_simulators_mp4(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    job_id = make_job(engine, prompt="a paper boat in the rain")
    job = drive(engine, job_id)
    assert job.state is JobState.DONE, job.error_message
    assert _sha256(job.output_path) == VIDEO_SHA256
    assert job.sha256 == VIDEO_SHA256
    manifest = json.loads(Path(job.output_path or "").with_suffix(".json").read_text())
    assert manifest["sha256"] == VIDEO_SHA256
    assert manifest["request"]["prompt"] == "a paper boat in the rain"
    assert set(job.times) >= {
        "queued",
        "submitting",
        "submitted",
        "generated",
        "downloading",
        "done",
    }
    stats = sim.stats()
    assert stats["submissions"] == 1


def test_image_to_video_uploads_the_local_file_first(
    engine: RecordingEngine, sim: SimulatorProcess, tmp_path: Path
) -> None:
    image = tmp_path / "portrait.png"
    image.write_bytes(PNG_BYTES)
    job_id = make_job(engine, prompt="@image1 comes alive", images=[str(image)])
    job = drive(engine, job_id)
    assert job.state is JobState.DONE, job.error_message
    assert _sha256(job.output_path) == VIDEO_SHA256
    stats = sim.stats()
    assert stats["uploads"] == 1
    assert job.uploaded == [str(image.resolve())]
    assert list(engine.store.uploads(job)) == [str(image.resolve())]


def test_a_second_submit_message_for_the_same_step_submits_nothing(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    job_id = make_job(engine)
    first = run_step(engine, "submit", job_id, seq=0)
    duplicate = run_step(engine, "submit", job_id, seq=0)
    assert first.action == "next"
    assert duplicate.action == "stop"
    assert sim.stats()["submissions"] == 1


def test_a_stale_message_from_an_older_seq_changes_nothing(engine: RecordingEngine) -> None:
    job_id = make_job(engine)
    engine.store._change(job_id, states=None, incr={"seq": 1})
    before = engine.store.get(job_id)
    outcome = run_step(engine, "submit", job_id, seq=0)
    after = engine.store.get(job_id)
    assert outcome.action == "stop"
    assert "stale" in outcome.reason
    assert before is not None and after is not None
    assert after.state is JobState.QUEUED
    assert after.submit_attempts == 0


def test_duplicate_poll_download_and_finish_messages_do_nothing(
    engine: RecordingEngine,
    sim: SimulatorProcess,
    task_registry: set[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    task_registry.add("app.record")
    engine.registered = task_registry.__contains__
    job_id = make_job(engine, on_done="app.record")
    assert run_step(engine, "submit", job_id, seq=0).action == "next"
    # Poll until generated, then replay the same poll message.
    n = 0
    for _ in range(100):
        job = engine.store.get(job_id)
        assert job is not None
        if job.state is JobState.GENERATED:
            break
        outcome = run_step(engine, "poll", job_id, seq=0, n=n)
        n = outcome.kwargs.get("n", n)
        if outcome.action == "again":
            import time

            time.sleep(min(outcome.countdown, 0.3))
    assert run_step(engine, "poll", job_id, seq=0, n=0).action == "stop"
    assert run_step(engine, "download", job_id, seq=0).action == "next"  # it finishes the job
    assert run_step(engine, "download", job_id, seq=0).action == "stop"  # a replay: done
    assert sim.stats()["downloads"] == 1
    # An earlier release's finish message, still queued, finds nothing left to do.
    from tasks import render

    monkeypatch.setattr(render, "get_engine", lambda: engine)
    render.finish.run(job_id, 0)
    assert [s for s in engine.sent if s[0].startswith("relaydance.")] == []
    notified = [s for s in engine.sent if s[0] == "app.record"]
    assert len(notified) == 1
    assert notified[0][1][0]["state"] == "done"
    assert notified[0][1][0]["sha256"] == VIDEO_SHA256


def test_a_failed_generation_fails_the_job_with_the_providers_message(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    sim.configure(failure_rate=1.0)
    job = drive(engine, make_job(engine))
    assert job.state is JobState.FAILED
    assert job.error_code == "generation_failed"
    assert job.error_message


def test_a_request_the_provider_refuses_fails_with_bad_request(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    job_id = make_job(engine)
    # Write a request the local checks would have refused, to see the provider's 400.
    engine.store._change(
        job_id,
        states=None,
        set={"request": json.dumps({"model": "doubao-seedance-2-0-fast-260128",
                                    "prompt": "@image3 dances", "seconds": 5})},
    )  # fmt: skip
    job = drive(engine, job_id)
    assert job.state is JobState.FAILED
    assert job.error_code == "bad_request"
    assert "image3" in (job.error_message or "").lower()


def test_a_revoked_key_pauses_the_key_and_its_job_waits_unbilled_until_the_key_works(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    sim.configure(revoked_keys=["*"])
    job_id = make_job(engine)
    try:
        job = drive(engine, job_id)
        assert job.state is JobState.WAITING_FOR_SLOT
        assert job.billing.value == "none"
        (hold,) = engine.limits.paused("default")
        assert (hold.kind, hold.model, hold.refusals) == ("unauthorized", None, 1)
        assert "401" in hold.reason and KEY not in hold.reason
        assert sim.stats()["submissions"] == 0
    finally:
        sim.configure(revoked_keys=[])
    _probe_now(engine, job_id)
    job = drive(engine, job_id)
    assert job.state is JobState.DONE
    assert engine.limits.paused("default") == []  # the probe's success lifted the pause
    assert sim.stats()["submissions"] == 1


def test_an_empty_balance_pauses_the_key_and_a_top_up_resumes_it(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    sim.configure(credit_clips=0)  # RelayDance answers 403 "insufficient balance"
    job_id = make_job(engine)
    job = drive(engine, job_id)
    assert job.state is JobState.WAITING_FOR_SLOT and job.billing.value == "none"
    (hold,) = engine.limits.paused("default")
    assert hold.kind == "insufficient_credits" and "balance" in hold.reason.lower()
    sim.configure(credit_clips=5)
    _probe_now(engine, job_id)
    assert drive(engine, job_id).state is JobState.DONE
    assert sim.stats()["refused_credits"] == 1


def test_kinovis_402_pauses_the_key_with_its_own_kind(engine: RecordingEngine) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(402, json={"message": "Insufficient credits"})

    engine.client = ApiClient(
        base_url="https://relaydance.test/v1", transport=httpx.MockTransport(handler)
    )
    job = drive(engine, make_job(engine))
    assert job.state is JobState.WAITING_FOR_SLOT
    (hold,) = engine.limits.paused("default")
    assert hold.kind == "insufficient_credits" and "Insufficient credits" in hold.reason


def test_a_model_the_key_may_not_use_pauses_that_model_only(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    sim.configure(forbidden_models=["doubao-seedance-2-0-fast-260128"])
    refused = drive(engine, make_job(engine))
    allowed = drive(engine, make_job(engine, model="doubao-seedance-2-0-720p"))
    assert refused.state is JobState.WAITING_FOR_SLOT
    assert allowed.state is JobState.DONE  # the key's other models go on
    (hold,) = engine.limits.paused("default")
    assert (hold.kind, hold.model) == ("model", "doubao-seedance-2-0-fast-260128")
    sim.configure(forbidden_models=[])
    _probe_now(engine, refused.id)
    assert drive(engine, refused.id).state is JobState.DONE
