"""The money contracts (tests/contracts) on the suite's own redis-server: the same suites
run on fakeredis in tests/unit/test_money_contracts.py, so the two cannot drift."""

from __future__ import annotations

import pytest
import redis

from tests.contracts.adoption import AdoptionContract
from tests.contracts.budget import BudgetContract
from tests.contracts.slots import SlotsContract
from tests.contracts.store import StoreContract
from tests.contracts.submit import SubmitContract
from tests.contracts.sweeper import SweeperContract


@pytest.fixture(params=["real"])
def redis_backend(redis_client: redis.Redis) -> redis.Redis:
    return redis_client


class TestAdoption(AdoptionContract):
    pass


class TestSlots(SlotsContract):
    pass


class TestBudget(BudgetContract):
    pass


class TestSubmit(SubmitContract):
    pass


class TestSweeper(SweeperContract):
    pass


class TestStore(StoreContract):
    pass
