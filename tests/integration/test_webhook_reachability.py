"""A receiver the provider cannot reach is noticed, said loudly once, and shown on each job.

The issue's story, for real: a worker whose RELAYDANCE_WEBHOOK_BASE_URL points at a port
where nothing listens, the simulator's webhook deliveries failing there, a job sitting
``submitted`` until its safety poll. The safety poll is brought forward by the sweeper
(as if its 10 minutes had passed) rather than waited for.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from simulator.testing import SimulatorProcess
from tasks import enqueue_render, get_job, wait
from tests.fleet import Fleet, point_this_process_at, wait_for
from worker.cli.doctor import run_checks
from worker.cli.main import main
from worker.infra.redis_server import RedisServer, free_port
from worker.job.engine import get_engine
from worker.job.record import JobState
from worker.job.sweeper import sweep

pytestmark = pytest.mark.integration
MODEL = "doubao-seedance-2-0-fast-260128"
UNREACHABLE = "WEBHOOK RECEIVER UNREACHABLE"
NOT_ARRIVING = "WEBHOOKS ARE NOT ARRIVING"


@pytest.fixture
def fleet(
    redis_server: RedisServer,
    sim: SimulatorProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Fleet]:
    redis.Redis.from_url(redis_server.url).flushall()
    sim.configure(webhooks=True, gen_time_mean=0.3)
    env = {
        "REDIS_URL": redis_server.url,
        "RELAYDANCE_API_KEY": "sk-test-reachability",
        "RELAYDANCE_BASE_URL": sim.url,
        "RELAYDANCE_ALLOW_LOCAL_URLS": "true",
        "RELAYDANCE_OUTPUT_DIR": str(tmp_path / "renders"),
        # The Django README's port while the app runs elsewhere: nothing listens here.
        "RELAYDANCE_WEBHOOK_BASE_URL": f"http://127.0.0.1:{free_port()}/hooks",
        "RELAYDANCE_WEBHOOK_SECRET": "test-reachability-secret-Jgz7rrk4mc4kc6PuWXsiKT_4XlaimcNW",
    }
    logs = tmp_path / "logs"
    logs.mkdir()
    fleet = Fleet(env, logs, concurrency=4)
    point_this_process_at(env, monkeypatch)
    fleet.start()
    try:
        yield fleet
    finally:
        fleet.stop()


def _safety_poll_now(job_id: str) -> None:
    """Bring the job's safety poll forward, as the sweeper does once it is overdue."""
    engine = get_engine()
    engine.store._change(job_id, states=None, due=time.time() - 3600)
    assert job_id in sweep(engine).resumed


def _finish_by_safety_poll(fleet: Fleet, job: str) -> None:
    live = (JobState.SUBMITTED, JobState.RUNNING)
    wait_for(lambda: get_job(job).state in live, what="the submission")
    _safety_poll_now(job)
    assert wait(job, timeout=60).state is JobState.DONE, fleet.logs()
    wait_for(lambda: fleet.log_lines(f"job {job} ended without its webhook"), what="the count")


def test_an_unreachable_receiver_is_logged_once_and_shown_on_the_waiting_job(
    fleet: Fleet, sim: SimulatorProcess
) -> None:
    wait_for(lambda: fleet.log_lines(UNREACHABLE), what="the receiver self-check")
    job_id = enqueue_render({"model": MODEL, "prompt": "a lighthouse", "seconds": 5})
    wait_for(lambda: sim.stats()["webhooks_failed"] >= 1, what="a failed webhook delivery")
    assert get_job(job_id).state in (JobState.SUBMITTED, JobState.RUNNING)

    status = CliRunner().invoke(main, ["status", job_id])
    assert status.exit_code == 0, status.output
    assert "waiting for webhook, safety poll at " in status.output
    assert re.search(r"\(next check in (9 m \d+ s|10 m)\)", status.output), status.output
    assert "failed its self-check" in status.output and "unreachable" in status.output

    def doctor() -> dict[str, str]:
        return {c.name: c.status for c in run_checks()}

    # The worker answers doctor's ping; on a loaded machine perhaps not the first time.
    checks = wait_for(lambda: (found := doctor())["workers"] == "pass" and found, timeout=30)
    assert checks["receiver"] == "fail"

    second = enqueue_render({"model": MODEL, "prompt": "a second lighthouse"})
    for job in (job_id, second):
        _finish_by_safety_poll(fleet, job)

    assert len(fleet.log_lines(UNREACHABLE)) == 1
    assert len(fleet.log_lines(NOT_ARRIVING)) == 1  # loud once, not once per job
    assert fleet.log_lines("ended without its webhook (2 such jobs so far)")
    assert "sk-test-reachability" not in fleet.log_text()
