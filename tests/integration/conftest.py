"""Every test below this folder is an integration test: it starts a redis-server, the
simulator process, an S3 server or a Celery worker. The marker is added here, so
``pytest -m "not integration"`` runs the unit set without each file having to say so."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The hook sees every collected item, not only this folder's: mark ours alone.
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.integration)
