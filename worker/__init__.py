"""The engine of the fleet: the Celery app and everything the tasks call.

``celery -A worker worker`` finds :data:`app` here. Building the app reads no settings;
its configuration is computed from the settings the first time Celery needs it.
"""

from __future__ import annotations

from worker.celery_app import app

__all__ = ["app"]
