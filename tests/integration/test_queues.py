"""Work after generation has its own queue: a burst of submissions never holds back a clip.

One worker thread, a backlog of submissions each taking a while at the provider, and one
job whose clip is ready: its webhook and download run before the backlog drains, because
they wait on the delivery queue, which the worker takes from in turn with the other.
The assertion is about the order of events, never about wall time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from simulator.testing import SimulatorProcess
from tests.fleet import Fleet, wait_for, webhook_env
from worker.infra.redis_server import RedisServer, free_port
from worker.job.record import JobState

pytestmark = pytest.mark.integration

MODEL = "doubao-seedance-2-0-fast-260128"
BACKLOG = 120


@pytest.fixture
def fleet(redis_server: RedisServer, sim: SimulatorProcess, tmp_path: Path) -> Iterator[Fleet]:
    import redis

    redis.Redis.from_url(redis_server.url).flushall()
    sim.configure(gen_time_mean=0.5, latency=0.05, webhooks=True)
    env = webhook_env(redis_server.url, sim.url, free_port(), tmp_path / "renders",
                      key="sk-test-queues", secret="queues-secret-_Vq9MShnPJwhUmss8wsccx_PH3w1D8VJ")  # fmt: skip
    env["RELAYDANCE_MAX_CONCURRENCY"] = "1000"
    env["RELAYDANCE_REQUESTS_PER_SECOND"] = "1000"
    (tmp_path / "logs").mkdir()
    fleet = Fleet(env, tmp_path / "logs", concurrency=1, web=True)
    with fleet.running():
        yield fleet


def test_a_ready_clip_is_delivered_before_a_burst_of_submissions_drains(fleet: Fleet) -> None:
    from tasks import enqueue_render, get_job

    ready = enqueue_render({"model": MODEL, "prompt": "the one that is ready"})
    wait_for(lambda: get_job(ready).remote_task_id, what="the first job submitted")
    backlog = [enqueue_render({"model": MODEL, "prompt": f"burst {n}"}) for n in range(BACKLOG)]
    done = wait_for(lambda: (j := get_job(ready)).state is JobState.DONE and j, timeout=60,
                    what="the ready job done")  # fmt: skip
    started = done.times["downloading"]
    later = [i for i in backlog if get_job(i).times.get("submitting", float("inf")) > started]
    # Submissions were still waiting when its download began: it did not queue behind them.
    assert len(later) >= BACKLOG // 4, (len(later), fleet.logs())
