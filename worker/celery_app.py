"""The Celery app: built at import (cheap), configured from the settings on first use."""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_process_init, worker_ready

from config.celery import celery_config
from config.settings import get_settings
from worker.flower_guard import install_flower_guard
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
# Only when this process is `celery ... flower`: Flower then refuses to start without a login.
install_flower_guard()


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


@worker_init.connect
def _trust_the_worker_task_registry(**_: Any) -> None:
    # A worker has imported every task module it runs (-I included): an on_done name
    # missing from its registry would be dropped on receipt, so it is reported instead.
    from worker.notify import set_task_registry

    set_task_registry(lambda name: name in app.tasks)


@worker_ready.connect
def _check_the_webhook_receiver(**_: Any) -> None:
    # In a thread: the check may take seconds, and the worker is already taking tasks.
    def check() -> None:
        from worker.engine import get_engine
        from worker.webhook_health import check_at_worker_start

        check_at_worker_start(get_engine())

    if get_settings().webhook_base_url:
        threading.Thread(target=check, name="webhook-self-check", daemon=True).start()
