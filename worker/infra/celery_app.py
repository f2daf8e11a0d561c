"""The Celery app: built at import (cheap), configured from the settings on first use.

What a worker process does at start, fork and ready is in :mod:`worker.job.worker_signals`,
which Celery imports in every worker: the app itself knows nothing of the engine.
"""

from __future__ import annotations

from celery import Celery

from config.celery import celery_config
from config.settings import get_settings
from worker.infra.flower_guard import install_flower_guard
from worker.infra.logs import install_celery_logging

__all__ = ["app"]

app = Celery("relaydance")
# add_defaults takes a callable that Celery evaluates when the configuration is first
# read, so importing this module reads no environment and opens no connection.
app.add_defaults(lambda: celery_config(get_settings()))
# Celery builds its log handlers when a worker or beat starts; these receivers add the
# redaction filter (and JSON with RELAYDANCE_LOG_JSON) to them. Connecting reads no settings.
install_celery_logging()
# Only when this process is `celery ... flower`: Flower then refuses to start without a login.
install_flower_guard()
