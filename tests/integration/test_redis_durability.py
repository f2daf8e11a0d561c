"""A Redis that may forget: ``doctor`` fails it and every worker says so at start.

A real ``redis-server --maxmemory 2mb --maxmemory-policy allkeys-lru`` with no persistence,
as many managed services are set up by default: under memory pressure it would evict job
records, claims, limits and the waiting line, and a restart would forget them all.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from simulator.testing import SimulatorProcess
from tests.fleet import Fleet, fleet_env, point_this_process_at
from worker.cli.main import main
from worker.infra.redis_server import RedisServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def forgetful() -> Iterator[RedisServer]:
    extra = ["--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru"]
    with RedisServer(appendonly=False, extra=extra) as server:
        yield server


def test_doctor_fails_an_evicting_redis_without_persistence_naming_each_fix(
    forgetful: RedisServer, sim: SimulatorProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = fleet_env(redis_url=forgetful.url, sim_url=sim.url, output_dir=tmp_path / "renders")
    point_this_process_at(env, monkeypatch)
    result = CliRunner().invoke(main, ["doctor"])
    lines = {line.split()[1]: line for line in result.output.splitlines() if line[:4].strip()}
    assert result.exit_code == 1
    assert lines["redis"].startswith("PASS")
    assert lines["eviction"].startswith("FAIL  eviction")
    assert "maxmemory-policy is allkeys-lru" in lines["eviction"]
    assert "set maxmemory-policy noeviction" in lines["eviction"]
    assert lines["persistence"].startswith("FAIL") and "set appendonly yes" in lines["persistence"]


def test_each_worker_logs_one_error_line_with_the_fix_at_start(
    forgetful: RedisServer, sim: SimulatorProcess, tmp_path: Path
) -> None:
    env = fleet_env(redis_url=forgetful.url, sim_url=sim.url, output_dir=tmp_path / "renders")
    (tmp_path / "logs").mkdir()
    fleet = Fleet(env, tmp_path / "logs", concurrency=1)
    try:
        fleet.start()
    finally:
        fleet.stop()
    said = fleet.log_lines("REDIS MAY FORGET JOBS")
    assert len(said) == 1, fleet.logs()
    assert "ERROR" in said[0]
    assert "maxmemory-policy is allkeys-lru" in said[0] and "noeviction" in said[0]
    assert "persistence is off" in said[0] and "appendonly yes" in said[0]
