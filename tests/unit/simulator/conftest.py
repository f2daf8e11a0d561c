"""The in-process simulator's tests: an async client on a fresh simulator with a fake clock."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.unit.simulator.content import Client


@pytest.fixture
def client(make_client: Callable[..., Client]) -> Client:
    return make_client()
