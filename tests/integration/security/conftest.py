"""The hostile-input tests' world: a real Redis, the simulator and a media directory per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from config.settings import get_settings
from simulator.testing import SimulatorProcess
from tests.fleet import fleet_env, point_this_process_at
from tests.integration.security.hostile import World
from worker.job.engine import reset_engine


@pytest.fixture
def world(
    redis_url: str,
    redis_client: redis.Redis,
    sim: SimulatorProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[World]:
    allowed, outside, cwd = tmp_path / "media", tmp_path / "private", tmp_path / "cwd"
    for directory in (allowed, outside, cwd):
        directory.mkdir()
    env = fleet_env(
        redis_url=redis_url, sim_url=sim.url, output_dir=tmp_path / "renders",
        RELAYDANCE_MEDIA_DIRS=str(allowed),
    )  # fmt: skip
    point_this_process_at(env, monkeypatch)
    monkeypatch.chdir(cwd)  # the working directory holds nothing of interest
    yield World(tmp_path, allowed, outside, sim, redis_client, env, monkeypatch)
    get_settings.cache_clear()
    reset_engine()
