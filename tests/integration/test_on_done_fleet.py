"""on_done with a real worker: every final state reaches the app's task, a typo is reported."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from simulator.testing import SimulatorProcess
from tasks import cancel, enqueue_render, get_job, wait
from tests.fleet import Fleet, fleet_env, wait_for
from tests.on_done_recorder import LIST_KEY, TASK_NAME
from worker.cli.main import main
from worker.infra.redis_server import RedisServer
from worker.job.record import JobState

pytestmark = pytest.mark.integration
MODEL = "doubao-seedance-2-0-fast-260128"


@pytest.fixture
def fleet(redis_server: RedisServer, sim: SimulatorProcess, tmp_path: Path) -> Iterator[Fleet]:
    redis.Redis.from_url(redis_server.url).flushall()
    env = fleet_env(redis_url=redis_server.url, sim_url=sim.url, output_dir=tmp_path / "out",
                    RELAYDANCE_POLL_FIRST_DELAY="0.5")  # fmt: skip
    logs = tmp_path / "logs"
    logs.mkdir()
    fleet = Fleet(env, logs, concurrency=4, includes=["tests.on_done_recorder"])
    with fleet.running():
        yield fleet


def _recorded(redis_url: str) -> dict[str, dict[str, Any]]:
    client = redis.Redis.from_url(redis_url)
    rows = [json.loads(raw) for raw in client.lrange(LIST_KEY, 0, -1)]
    client.close()
    return {row["job_id"]: row for row in rows}


def test_the_apps_task_hears_done_failed_and_canceled_once_each(
    fleet: Fleet, sim: SimulatorProcess, redis_server: RedisServer
) -> None:
    done = enqueue_render({"model": MODEL, "prompt": "a kite"}, on_done=TASK_NAME)
    assert wait(done, timeout=60).state is JobState.DONE
    sim.configure(failure_rate=1.0)
    failed = enqueue_render({"model": MODEL, "prompt": "a storm"}, on_done=TASK_NAME)
    assert wait(failed, timeout=60).state is JobState.FAILED
    sim.configure(failure_rate=0.0, gen_time_mean=30.0)
    canceled = enqueue_render({"model": MODEL, "prompt": "a calm sea"}, on_done=TASK_NAME)
    wait_for(lambda: get_job(canceled).state in (JobState.SUBMITTED, JobState.RUNNING))
    assert cancel(canceled)  # from this process, as the CLI would: a worker sends it

    wait_for(lambda: len(_recorded(redis_server.url)) == 3, what="three summaries")
    seen = _recorded(redis_server.url)
    assert {job: row["state"] for job, row in seen.items()} == {
        done: "done",
        failed: "failed",
        canceled: "canceled",
    }
    assert seen[failed]["error_code"] == "generation_failed"
    assert seen[canceled]["dedupe_key"] == f"{canceled}:canceled"
    for job_id in (done, failed, canceled):
        assert get_job(job_id).on_done_status == "sent"
    assert len(fleet.log_lines("Received unregistered task")) == 0


def test_a_misspelt_on_done_is_reported_by_render_and_status_and_in_the_log(
    fleet: Fleet,
) -> None:
    typo = "tests.recrod_on_done"
    result = CliRunner().invoke(
        main, ["render", "--model", MODEL, "--prompt", "a kite", "--on-done", typo, "--wait"]
    )
    assert result.exit_code == 0, result.output  # the render itself is done
    assert f"warning: on_done {typo}: unregistered" in result.stderr
    job_id = result.stdout.strip().rsplit("/", 1)[-1].removesuffix(".mp4")
    status = CliRunner().invoke(main, ["status", job_id])
    assert f"on_done {typo!r}: unregistered: no task named {typo!r}" in status.output
    assert fleet.log_lines(f"job {job_id}: on_done not delivered")
    assert len(fleet.log_lines("Received unregistered task")) == 0  # never sent to be dropped
