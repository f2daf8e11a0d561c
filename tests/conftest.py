"""Shared fixtures: a private redis-server per test session, flushed for each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from worker.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on a free port, for the whole session."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """URL of the session's redis-server, emptied before each test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A redis-py client (decoded strings) on an empty database."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()
