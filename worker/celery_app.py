"""The Celery app: built at import (cheap), configured from the settings on first use."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_process_init

from config.celery import celery_config
from config.settings import get_settings
from worker.logs import install_celery_logging

__all__ = ["app"]

logger = logging.getLogger(__name__)

app = Celery("relaydance")
# add_defaults takes a callable that Celery evaluates when the configuration is first
# read, so importing this module reads no environment and opens no connection.
app.add_defaults(lambda: celery_config(get_settings()))
# Celery builds its log handlers when a worker or beat starts; these receivers add the
# redaction filter (and JSON with RELAYDANCE_LOG_JSON) to them. Connecting reads no settings.
install_celery_logging()


@worker_process_init.connect
def _fresh_clients_after_fork(**_: Any) -> None:
    # Connections and pools made before a prefork worker forked belong to the parent.
    from worker.engine import reset_engine

    reset_engine()


@worker_init.connect
def _refuse_to_work_without_a_writable_output(**_: Any) -> None:
    # A worker that could not deliver a clip must not submit (and pay for) any job.
    from worker.errors import StorageError
    from worker.storage import check_output

    try:
        checked = check_output(get_settings())
    except StorageError as exc:
        logger.critical("this worker will not start: the output is not writable: %s", exc)
        raise SystemExit(3) from None
    logger.info("output writable: %s", checked)
