"""The batch tests' fleet: a real worker and the simulator, shared by a module, and this
process pointed at them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from config.settings import get_settings
from simulator.testing import SimulatorProcess
from tests.batch_requests import jsonl, req
from tests.fleet import point_this_process_at
from worker.batch import Batches
from worker.infra.redis_server import RedisServer
from worker.job.engine import reset_engine

ROOT = Path(__file__).resolve().parents[1]

CLIP = 0.70


@dataclass
class Stack:
    sim: SimulatorProcess
    env: dict[str, str]
    log: Path
    redis: redis.Redis


def batch_stack(
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
    **settings: str,
) -> Iterator[Stack]:
    """A worker on database 0 of the session's redis-server, and the simulator; with
    ``settings`` (``RELAYDANCE_...`` names) added to the worker's environment."""
    tmp = tmp_path_factory.mktemp("batches")
    with SimulatorProcess(gen_time_mean=0.2, gen_time_jitter=0.1) as sim:
        env = {
            "REDIS_URL": redis_server.url,
            "RELAYDANCE_API_KEY": "sk-test-batches",
            "RELAYDANCE_BASE_URL": sim.url,
            "RELAYDANCE_ALLOW_LOCAL_URLS": "true",
            "RELAYDANCE_OUTPUT_DIR": str(tmp / "renders"),
            "RELAYDANCE_POLL_FIRST_DELAY": "0.3",
            "RELAYDANCE_POLL_INTERVAL_MIN": "0.2",
            "RELAYDANCE_POLL_INTERVAL_MAX": "0.5",
            # Far above what the tests send: no step waits on the request-rate limiter.
            "RELAYDANCE_REQUESTS_PER_SECOND": "1000",
            **settings,
        }
        log = tmp / "worker.log"
        with log.open("wb") as out:
            worker = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "worker", "worker", "--pool", "threads",
                 "-c", "4", "-I", "tasks.batches", "--without-gossip", "--without-mingle",
                 "--loglevel", "INFO", "--hostname", f"batches-{os.getpid()}@%h"],
                env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
            )  # fmt: skip
        client = redis.Redis.from_url(redis_server.url, decode_responses=True)
        try:
            yield Stack(sim, env, log, client)
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
            client.close()


def live_stack(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """This process pointed at the stack (settings, engine and the whole Celery config: an
    earlier test in this process may have left a Sentinel broker behind), its keys emptied
    and its simulator reset."""
    point_this_process_at(stack.env, monkeypatch)
    keys = [k for k in stack.redis.scan_iter("rd:*")]
    if keys:
        stack.redis.delete(*keys)
    stack.sim.reset()
    stack.sim.configure(gen_time_mean=0.2, failure_rate=0.0)
    yield stack
    get_settings.cache_clear()
    reset_engine()


def _wait(batch_id: str, stack: Stack, timeout: float = 60.0) -> Any:
    from tasks.batches import wait_batch

    try:
        return wait_batch(batch_id, timeout=timeout, interval=0.2)
    except TimeoutError:
        print(stack.log.read_text(errors="replace")[-4000:])
        raise


def live_batches() -> Batches:
    from worker.job.engine import get_engine

    return Batches(get_engine())


def fifty_lines_with_three_bad() -> str:
    lines: list[Any] = [req(f"shot {i}") for i in range(50)]
    lines[6] = req("shot 6", seconds=40)
    lines[19] = req("shot 19", ratio="5:4")
    lines[41] = {"prompt": "shot 41"}
    return jsonl(lines)
