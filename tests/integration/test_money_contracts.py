"""The money contracts (tests/contracts) on the suite's own redis-server: the same suites
run on fakeredis in tests/unit/test_money_contracts.py, so the two cannot drift."""

from __future__ import annotations

import pytest
import redis

from tests.contracts.submit import SubmitContract


@pytest.fixture(params=["real"])
def redis_backend(redis_client: redis.Redis) -> redis.Redis:
    return redis_client


class TestSubmit(SubmitContract):
    pass
