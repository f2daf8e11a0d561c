"""Redis Sentinel: a worker and beat configured with a sentinel:// URL render a clip."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from config.settings import SettingsError, load_settings
from simulator.testing import SimulatorProcess
from tasks import enqueue_render, wait
from tests.fleet import Fleet, fleet_env, use_env, wait_until
from worker.infra.redis_server import RedisServer, find_redis_server, free_port
from worker.job.engine import get_engine
from worker.job.record import JobState

pytestmark = pytest.mark.integration


@pytest.fixture
def sentinel_url(redis_server: RedisServer, tmp_path: Path) -> Iterator[str]:
    """A real sentinel watching the session's redis-server as master ``mymaster``."""
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor mymaster 127.0.0.1 {redis_server.port} 1\n"
        "sentinel down-after-milliseconds mymaster 60000\n"
    )
    proc = subprocess.Popen(
        [find_redis_server(), str(conf), "--sentinel"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(port=port, socket_connect_timeout=0.2)

    def ready() -> bool:
        try:
            return bool(client.sentinel_get_master_addr_by_name("mymaster"))
        except redis.RedisError:
            return False

    try:
        assert wait_until(ready, timeout=10)
        yield f"sentinel://127.0.0.1:{port}/0"
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)


def test_a_sentinel_url_needs_the_master_name() -> None:
    with pytest.raises(SettingsError, match="RELAYDANCE_REDIS_SENTINEL_MASTER"):
        load_settings(redis_url="sentinel://127.0.0.1:26379/0")


def test_the_fleet_renders_through_redis_sentinel(
    redis_server: RedisServer, sentinel_url: str, sim: SimulatorProcess, tmp_path: Path
) -> None:
    redis.Redis.from_url(redis_server.url).flushall()
    env = fleet_env(redis_url=sentinel_url, sim_url=sim.url, output_dir=tmp_path / "out",
                    RELAYDANCE_REDIS_SENTINEL_MASTER="mymaster")  # fmt: skip
    (tmp_path / "logs").mkdir()
    fleet = Fleet(env, tmp_path / "logs", beat=True)
    with use_env(env):
        engine = get_engine()
        assert engine.redis.connection_pool.__class__.__name__ == "SentinelConnectionPool"
        fleet.start()
        try:
            # This process's Celery app was configured earlier with the plain URL of the
            # same server the sentinel watches; the worker and beat know only the sentinel.
            job = wait(enqueue_render({"model": "doubao-seedance-2-0-fast-260128",
                                       "prompt": "through the sentinel"}), timeout=60)  # fmt: skip
            # A beat tick through the sentinel (beat may still be taking its lock).
            ticked = wait_until(
                lambda: "Sending due task relaydance-sweep" in fleet.log_text(), timeout=30
            )
        finally:
            fleet.stop()
    assert job.state is JobState.DONE, fleet.logs()
    assert ticked, fleet.logs()
    logs = fleet.logs()
    assert "Traceback" not in logs
