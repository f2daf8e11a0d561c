"""The money contracts (tests/contracts) on fakeredis with its Lua support: the same suites
run on a real redis-server in tests/integration/test_money_contracts.py."""

from __future__ import annotations

import pytest
import redis

from tests.contracts.adoption import AdoptionContract
from tests.contracts.budget import BudgetContract
from tests.contracts.harness import fake_backend
from tests.contracts.slots import SlotsContract
from tests.contracts.store import StoreContract
from tests.contracts.submit import SubmitContract
from tests.contracts.sweeper import SweeperContract


@pytest.fixture(params=["fake"])
def redis_backend() -> redis.Redis:
    return fake_backend()


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
