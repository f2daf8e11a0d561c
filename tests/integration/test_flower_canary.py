"""Flower shows the work, and a canary API key appears nowhere a secret must not be."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from simulator.testing import SimulatorProcess
from tasks import enqueue_render, wait
from tests.fleet import (
    Fleet,
    fleet_env,
    flower_lists_downloads,
    flower_sees_a_worker,
    start_flower,
    use_env,
    wait_until,
)
from worker.infra.redis_server import RedisServer, free_port
from worker.job.record import JobState

pytestmark = pytest.mark.integration


def _values(client: redis.Redis) -> Iterator[tuple[bytes, bytes]]:
    """Every key of the database with each of its values, raw."""
    for key in client.scan_iter(count=500):
        kind = client.type(key)
        if kind == b"string":
            yield key, client.get(key) or b""
        elif kind == b"hash":
            for field, value in client.hgetall(key).items():
                yield key, field + b"=" + value
        elif kind == b"list":
            for value in client.lrange(key, 0, -1):
                yield key, value
        elif kind == b"set":
            for value in client.smembers(key):
                yield key, value
        elif kind == b"zset":
            for value, _ in client.zrange(key, 0, -1, withscores=True):
                yield key, value


def _decoded(value: bytes) -> bytes:
    """A Celery message's body is base64 inside JSON: search the decoded body too."""
    try:
        message = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return value
    if isinstance(message, dict) and isinstance(message.get("body"), str):
        try:
            return value + base64.b64decode(message["body"])
        except ValueError:
            return value
    return value


def _assert_readable_kwargs(tasks: dict[str, Any]) -> None:
    """The submit shows the job, model and prompt; so does a poll re-sent by countdown."""
    submit = next(t for t in tasks.values() if t["name"] == "relaydance.submit")
    assert "job=rdj_" in submit["kwargs"]
    assert "model=doubao-seedance-2-0-fast-260128" in submit["kwargs"]
    assert "prompt='canary clip" in submit["kwargs"]
    # A poll re-sent by countdown keeps the readable kwargs, not just the job id.
    polls = [t for t in tasks.values() if t["name"] == "relaydance.poll"]
    assert polls
    assert all("model=doubao-seedance-2-0-fast-260128" in t["kwargs"] for t in polls)
    assert any(t.get("retries", 0) >= 1 for t in polls)


def test_flower_lists_our_tasks_and_the_canary_key_is_nowhere(
    redis_server: RedisServer, sim: SimulatorProcess, tmp_path: Path
) -> None:
    canary = "sk-canary-" + uuid.uuid4().hex
    sim.configure(gen_time_mean=1.0)  # polls reschedule themselves a few times
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    env = fleet_env(redis_url=redis_server.url, sim_url=sim.url, output_dir=tmp_path / "out",
                    RELAYDANCE_API_KEY=canary)  # fmt: skip
    logs = tmp_path / "logs"
    logs.mkdir()
    fleet = Fleet(env, logs, beat=True)
    port = free_port()
    with use_env(env):
        flower = start_flower(port, env, (logs / "flower.log").open("wb"))
        fleet.start()
        try:
            auth = ("ops", "test-pass")
            ready = wait_until(lambda: flower_sees_a_worker(port, auth), timeout=30, interval=0.5)
            assert ready, fleet.logs()
            ids = [enqueue_render({"model": "doubao-seedance-2-0-fast-260128",
                                   "prompt": f"canary clip {i}"}) for i in range(3)]  # fmt: skip
            jobs = [wait(i, timeout=60) for i in ids]
            api = f"http://127.0.0.1:{port}/api/tasks"
            listed = wait_until(lambda: flower_lists_downloads(api, auth, 3), timeout=30,
                                interval=0.5)  # fmt: skip
            assert listed, fleet.logs()
            assert httpx.get(api, timeout=2).status_code == 401  # never open without auth
            flower_text = httpx.get(api, auth=auth, timeout=5).text
            page = httpx.get(f"http://127.0.0.1:{port}/tasks", auth=auth, timeout=5).text
        finally:
            fleet.stop()
            flower.terminate()
            flower.wait(timeout=10)
    assert all(j.state is JobState.DONE for j in jobs)
    tasks = json.loads(flower_text)
    names = {t["name"] for t in tasks.values()}
    assert {
        "relaydance.submit",
        "relaydance.poll",
        "relaydance.download",  # it finishes the job
    } <= names
    _assert_readable_kwargs(tasks)
    assert canary not in flower_text
    assert canary not in page
    for log in logs.glob("*.log"):
        assert canary not in log.read_text(errors="replace"), log.name
    leaked = [key for key, value in _values(client) if canary.encode() in _decoded(value)]
    assert leaked == []
