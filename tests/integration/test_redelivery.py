"""A delivery the output refuses keeps the paid job and is tried again, not failed.

The steps run in this process against a real redis-server and the simulator over HTTP;
the output is a local directory that cannot be written (its parent is a file), then one
that can, as an operator's fix would make it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.settings import load_settings
from simulator import VIDEO_SHA256
from simulator.testing import SimulatorProcess
from tests.pipeline_helpers import RecordingEngine, drive, make_engine, make_job
from worker.job.record import JobState
from worker.job.sweeper import sweep
from worker.storage import LocalStorage


def _engine(redis_url: str, sim: SimulatorProcess, out: Path, **extra: object) -> RecordingEngine:
    settings = load_settings(
        redis_url=redis_url, api_key="sk-test-redelivery", base_url=sim.url,
        allow_local_urls=True, output_dir=out, poll_first_delay=0.2, poll_interval_min=0.1,
        poll_interval_max=0.3, storage_retry_interval=0.2, **extra,
    )  # fmt: skip
    return make_engine(settings)


@pytest.fixture
def blocked(tmp_path: Path) -> LocalStorage:
    (tmp_path / "not-a-dir").write_text("a file where the output directory should be")
    return LocalStorage(tmp_path / "not-a-dir" / "renders")


@pytest.fixture
def engine(redis_url: str, sim: SimulatorProcess, tmp_path: Path) -> Iterator[RecordingEngine]:
    eng = _engine(redis_url, sim, tmp_path / "renders")
    yield eng
    eng.close()


def test_a_refused_delivery_keeps_the_job_with_the_error_and_a_later_attempt_delivers_it(
    engine: RecordingEngine, sim: SimulatorProcess, blocked: LocalStorage, tmp_path: Path
) -> None:
    good = engine.storage
    engine.storage = blocked
    job_id = make_job(engine, prompt="a refused clip")

    job = drive(engine, job_id)

    assert job.state is JobState.DOWNLOADING  # not failed: the clip is paid for
    assert job.error_code == "storage_refused"
    assert "cannot write to" in (job.error_message or "")
    assert "not-a-dir" in (job.error_message or "")
    assert job.next_due is not None and job.next_due <= time.time() + 0.2
    assert sim.stats()["submissions"] == 1

    engine.storage = good  # the operator fixes the output
    time.sleep(0.25)  # the retry falls due
    assert sweep(engine, grace=0).resumed == [job_id]
    job = drive(engine, job_id)

    assert job.state is JobState.DONE, job.error_message
    assert job.sha256 == VIDEO_SHA256
    assert job.output_path == str((tmp_path / "renders" / f"{job_id}.mp4").resolve())
    assert job.error_code is None and job.error_message is None
    stats = sim.stats()
    assert stats["submissions"] == 1  # paid once
    # The refused attempt fetched nothing (the output is made ready before the clip is
    # asked for); the delivery that worked fetched it once, from a fresh task url.
    assert stats["downloads"] == 1


def test_a_delivery_refused_past_the_retry_window_fails_naming_the_remote_task(
    redis_url: str, sim: SimulatorProcess, blocked: LocalStorage, tmp_path: Path
) -> None:
    engine = _engine(redis_url, sim, tmp_path / "renders", storage_retry_seconds=0.1)
    try:
        engine.storage = blocked
        job_id = make_job(engine, prompt="never deliverable")
        assert drive(engine, job_id).state is JobState.DOWNLOADING
        time.sleep(0.25)
        assert sweep(engine, grace=0).resumed == [job_id]
        job = drive(engine, job_id)
    finally:
        engine.close()
    assert job.state is JobState.FAILED
    assert job.error_code == "storage_refused"
    assert f"still at the provider as task {job.remote_task_id}" in (job.error_message or "")
    assert sim.stats()["submissions"] == 1
