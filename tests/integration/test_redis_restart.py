"""A Redis restart with no process supervisor: every process rides it out, no job is lost.

A real redis-server (append-only file, fsync always) is SIGKILLed while jobs are in
flight, stays down longer than beat's lock, and comes back from its file on the same
port. Nothing in the test starts a process again: the worker, beat, the webhook receiver
and Flower must still run afterwards (Flower listing the tasks that ran after it), the
jobs enqueued before and after must finish, each paid once, beat must hold its lock again
and a worker must sweep again.

The second test makes a step meet the outage in the middle of its work (the provider's
reply arrives while Redis is away): the job is neither failed nor lost, because the job
record, not the message, keeps it alive, and a worker's own sweep resumes it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from simulator.testing import SimulatorProcess
from tests.fleet import Fleet, fleet_env, point_this_process_at, wait_until, webhook_env
from worker.infra.redis_server import RedisServer, free_port
from worker.job.record import JobState
from worker.job.sweeper import LAST_SWEEP_KEY

pytestmark = pytest.mark.integration

S = JobState
MODEL = "doubao-seedance-2-0-fast-260128"
DOWN_FOR = 10.0  # longer than beat's lock here (6 s: 6 x its 1 s loop), so it must take it again


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    """A redis-server of this module's own: its port survives its restarts."""
    with RedisServer(appendonly=True, appendfsync="always") as redis_server:
        yield redis_server


@pytest.fixture
def client(server: RedisServer) -> Iterator[redis.Redis]:
    found = redis.Redis.from_url(server.url, decode_responses=True)
    found.flushall()
    yield found
    found.close()


def _enqueue(prompt: str) -> str:
    from tasks import enqueue_render

    return enqueue_render({"model": MODEL, "prompt": prompt, "seconds": 5})


def _states(ids: list[str]) -> dict[str, int]:
    from tasks import get_job

    found: dict[str, int] = {}
    for job_id in ids:
        state = get_job(job_id).state.value
        found[state] = found.get(state, 0) + 1
    return found


def _quietly(predicate: Callable[[], Any]) -> Callable[[], bool]:
    def check() -> bool:  # this process's own reads meet the outage too
        try:
            return bool(predicate())
        except redis.RedisError:
            return False

    return check


def _flower(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker", "flower", f"--port={port}",
         "--address=127.0.0.1", "--basic-auth=ops:test-pass"],
        env={**os.environ, **env}, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    return proc, f"http://127.0.0.1:{port}"


def _flower_lists(url: str, job_ids: list[str]) -> bool:
    try:
        tasks = httpx.get(f"{url}/api/tasks", auth=("ops", "test-pass"), timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return False
    shown = " ".join(str(t.get("kwargs", "")) for t in tasks.values())
    return all(job_id in shown for job_id in job_ids)


def _beat_lock(client: redis.Redis) -> str | None:
    from redbeat.schedulers import ensure_conf

    from worker.infra.celery_app import app

    return client.get(ensure_conf(app).lock_key)  # type: ignore[return-value]


@pytest.mark.timeout(240)
def test_worker_beat_and_receiver_outlive_a_redis_restart_and_every_job_finishes(
    server: RedisServer, client: redis.Redis, sim: SimulatorProcess, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    sim.configure(webhooks=True, gen_time_mean=2.0, webhook_retry_base=1.0, webhook_max_attempts=8)
    env = webhook_env(server.url, sim.url, free_port(), tmp_path / "renders",
                      key="sk-test-restart", secret="restart-webhook-secret-PjTxoLViaz5L9HEswpZUcunNt57gddc1")  # fmt: skip
    env |= {"RELAYDANCE_SWEEP_INTERVAL_SECONDS": "1", "RELAYDANCE_SWEEP_GRACE_SECONDS": "2",
            "RELAYDANCE_STEP_GRACE_SECONDS": "5", "RELAYDANCE_HTTP_CALL_DEADLINE": "5"}  # fmt: skip
    point_this_process_at(env, monkeypatch)
    (tmp_path / "logs").mkdir()
    fleet = Fleet(env, tmp_path / "logs", concurrency=4, beat=True, web=True)
    flower, flower_url = _flower(env, tmp_path / "logs" / "flower.log")
    try:
        fleet.start()
        assert wait_until(lambda: _beat_lock(client), timeout=30), fleet.logs()
        before = [_enqueue(f"before the restart {n}") for n in range(4)]
        assert wait_until(lambda: _states(before).get("submitted", 0) >= 2, timeout=30)
        server.restart(crash=True, down_for=DOWN_FOR)  # SIGKILL; back from its file
        restarted = time.time()
        after = [_enqueue(f"after the restart {n}") for n in range(3)]
        finished = wait_until(_quietly(lambda: _states(before + after) == {"done": 7}),
                              timeout=120, interval=0.5)  # fmt: skip
        assert finished, f"{_states(before + after)} {tmp_path}"
        assert wait_until(lambda: float(client.get(LAST_SWEEP_KEY) or 0) > restarted, timeout=20)
        assert wait_until(lambda: _beat_lock(client), timeout=30), fleet.logs()
        # Nothing restarted them: the same processes run.
        assert fleet.worker is not None and fleet.worker.poll() is None, fleet.logs()
        assert fleet.beat is not None and fleet.beat.poll() is None, fleet.logs()
        assert fleet.receiver is not None and fleet.receiver.poll() is None, fleet.logs()
        assert fleet.starts == 1 and fleet.beat_starts == 1
        # Flower lived on and follows the events of what ran after the restart.
        assert wait_until(lambda: _flower_lists(flower_url, after), timeout=30), fleet.logs()
        assert flower.poll() is None
    finally:
        fleet.stop()
        flower.terminate()
        flower.wait(timeout=10)
    assert sim.stats()["paid_twice"] == 0
    beat = fleet.log_lines("beat: ")
    assert len([line for line in beat if "beat: Redis is unreachable" in line]) == 1, beat
    assert any("beat: Redis answers again after" in line for line in beat), beat
    assert "beat raised exception" not in fleet.log_text()


@pytest.mark.timeout(180)
def test_a_step_that_meets_redis_going_away_mid_task_loses_no_job(
    server: RedisServer, client: redis.Redis, sim: SimulatorProcess, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from tasks import get_job

    sim.configure(latency=3.0)  # every reply takes 3 s: a poll is in flight for that long
    env = fleet_env(redis_url=server.url, sim_url=sim.url, output_dir=tmp_path / "renders")
    point_this_process_at(env, monkeypatch)
    (tmp_path / "logs").mkdir()
    fleet = Fleet(env, tmp_path / "logs", concurrency=2)  # no beat: the worker sweeps
    try:
        fleet.start()
        job_id = _enqueue("a poll meets the outage")

        def polling() -> bool:
            return get_job(job_id).state in (S.SUBMITTED, S.RUNNING) and sim.stats()["polls"] > 0

        assert wait_until(polling, timeout=30), fleet.logs()
        # The first poll's GET is at the provider; its reply comes back to no Redis.
        server.restart(crash=True, down_for=4.0)
        done = wait_until(_quietly(lambda: get_job(job_id).state is S.DONE), timeout=90)
        assert done, f"{get_job(job_id).state} {fleet.logs()}"
        assert fleet.worker is not None and fleet.worker.poll() is None
    finally:
        fleet.stop()
    met = fleet.log_lines(f"job {job_id} relaydance.poll met a Redis outage")
    assert met, fleet.logs()  # the step did meet it mid-task
    assert sim.stats()["paid_twice"] == 0 and len(sim.tasks_for(job_id)) == 1
