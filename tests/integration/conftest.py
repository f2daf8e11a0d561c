"""Every test below this folder is an integration test: it starts a redis-server, the
simulator process, an S3 server or a Celery worker. The marker is added here, so
``pytest -m "not integration"`` runs the unit set without each file having to say so."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.batch_fleet import Stack, batch_stack, live_stack
from worker.infra.redis_server import RedisServer

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The hook sees every collected item, not only this folder's: mark ours alone.
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="module")
def stack(
    request: pytest.FixtureRequest,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """The batch tests' fleet (tests/batch_fleet.py), one per module, with the module's
    ``STACK_SETTINGS`` (``RELAYDANCE_...`` names) added to its worker's environment. A
    module whose fleet is of another kind defines its own ``stack`` (and ``live``)."""
    settings = getattr(request.module, "STACK_SETTINGS", {})
    yield from batch_stack(redis_server, tmp_path_factory, **settings)


@pytest.fixture
def live(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """This process pointed at the module's fleet, emptied (:func:`live_stack`)."""
    yield from live_stack(stack, monkeypatch)
