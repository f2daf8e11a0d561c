"""The engine of the fleet: the Celery app and everything the tasks call.

``celery -A worker worker`` finds :data:`app` here. It is loaded on first access, so
that importing a light module of the package (the request model, the catalogue,
pricing) does not build the Celery app or even import Celery. Building the app reads
no settings; its configuration is computed from the settings the first time Celery
needs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.infra.celery_app import app

__all__ = ["app"]


def __getattr__(name: str) -> Any:
    if name == "app":
        from worker.infra.celery_app import app as built

        return built
    raise AttributeError(f"module 'worker' has no attribute {name!r}")
