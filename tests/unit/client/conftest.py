"""The provider client's tests: a client per test on a recording MockTransport, closed after."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.unit.client.fakes import BASE, Handler, Recorder
from worker.provider.client import ApiClient


@pytest.fixture
def make_client() -> Iterator[Callable[[Handler], tuple[ApiClient, Recorder]]]:
    made: list[ApiClient] = []

    def make(respond: Handler) -> tuple[ApiClient, Recorder]:
        recorder = Recorder(respond)
        client = ApiClient(base_url=BASE, transport=httpx.MockTransport(recorder))
        made.append(client)
        return client, recorder

    yield make
    for client in made:
        client.close()
