"""Shared fixtures: a private redis-server per test session, flushed for each test."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator

import httpx
import pytest
import redis

from config.settings import get_settings
from simulator.testing import SimulatorProcess
from tests.clip_server import ClipServer
from tests.s3_server import Bucket, S3Server
from tests.sentinel_group import SentinelGroup
from worker.infra.redis_server import RedisServer
from worker.provider.download import make_download_client

# Tests keep their media files in pytest's temporary directories: allow those (the
# allow-list's own tests set RELAYDANCE_MEDIA_DIRS or pass media_dirs themselves).
TEST_MEDIA_DIRS = tempfile.gettempdir()
os.environ.setdefault("RELAYDANCE_MEDIA_DIRS", TEST_MEDIA_DIRS)


@pytest.fixture(autouse=True)
def _settings_follow_the_environment() -> Iterator[None]:
    """Forget the process's cached settings after each test, once its environment is back.

    A test that points this process elsewhere (``tests.fleet.point_this_process_at``)
    caches settings built from its own environment; the next test in the same process
    must read its own, not inherit that one's output directory or media allow-list.
    """
    yield
    get_settings.cache_clear()


class FakeClock:
    """Epoch seconds that move only when a test says so."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    """A clock for code that takes one (the limits, the in-process simulator)."""
    return FakeClock()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on a free port, for the whole session."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of the session's redis-server, emptied before each test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def sentinel_group() -> Iterator[SentinelGroup]:
    """A primary, two replicas and three sentinels, all real (tests/sentinel_group.py)."""
    with SentinelGroup() as group:
        yield group


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A redis-py client (decoded strings) on an empty database."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture(scope="session")
def simulator_process() -> Iterator[SimulatorProcess]:
    """One real simulator process (HTTP on loopback) for the whole session."""
    with SimulatorProcess(gen_time_mean=0.3, gen_time_jitter=0.0, seed=7) as sim:
        yield sim


SIM_DEFAULTS = {
    "dialect": "both",
    "billed_factor": 1.0,
    "gen_time_mean": 0.3,
    "gen_time_jitter": 0.0,
    "failure_rate": 0.0,
    "image_gen_time": 0.0,
    "concurrency_cap": 0,
    "error_5xx_rate": 0.0,
    "lost_response_rate": 0.0,
    "drop_reply_every": 0,
    "trickle_seconds": 0.0,
    "honour_idempotency": False,
    "time_scale": 1.0,
    "latency": 0.0,
    "webhooks": False,
    "url_ttl": 3600.0,
    "video_bytes": 0,
    "download_redirect": "",
    "download_rate": 0.0,
    "outage": False,
    "credit_clips": None,
    "revoked_keys": [],
    "forbidden_models": [],
}


@pytest.fixture
def sim(simulator_process: SimulatorProcess) -> SimulatorProcess:
    """The session's simulator with counters cleared and default knobs."""
    simulator_process.reset()
    simulator_process.configure(**SIM_DEFAULTS)
    return simulator_process


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A real S3-compatible server (moto's server mode) on loopback, for the whole session."""
    with S3Server() as server:
        yield server


@pytest.fixture
def bucket(s3_server: S3Server) -> Bucket:
    """An empty bucket ``clips`` on a freshly reset S3 server; clips go under ``renders/``."""
    s3_server.reset()
    found = Bucket(s3_server)
    s3_server.client().create_bucket(Bucket=found.name)
    return found


@pytest.fixture
def task_registry() -> set[str]:
    """A worker's task registry, holding the names the test adds: an engine given its
    ``__contains__`` as ``registered`` acts as a worker's."""
    return set()


@pytest.fixture
def clips() -> Iterator[ClipServer]:
    """A clip server on a free loopback port, in this process; set ``body`` and ``cut``."""
    served = ClipServer()
    # Polled often, so that the shutdown at each test's end takes milliseconds, not 0.5 s.
    thread = threading.Thread(
        target=served.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    )
    thread.start()
    try:
        yield served
    finally:
        served.server.shutdown()
        served.server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def http_client() -> Iterator[httpx.Client]:
    """The worker's own download client, to fetch the served clip with."""
    with make_download_client(connect_timeout=5, read_timeout=10) as client:
        yield client
