"""What a worker process does as it starts, forks and becomes ready.

Kept apart from :mod:`worker.infra.celery_app` so that the app itself needs nothing of the
engine: the engine sends tasks through the app, and these receivers use the engine.
Celery imports this module in every worker (it is in the app's ``include`` list) before
it sends ``worker_init``, so every receiver here is connected in time.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery.signals import worker_init, worker_process_init, worker_ready, worker_shutdown

from config.redis_url import DEFAULT_REDIS_URL, is_sentinel
from config.settings import get_settings
from worker.errors import StorageError
from worker.infra.celery_app import app
from worker.infra.outage import is_redis_outage
from worker.infra.redis_checks import durability_findings, forgetful_redis_line
from worker.job.engine import get_engine, reset_engine
from worker.job.reachability import check_at_worker_start
from worker.job.sweep_loop import SweepLoop
from worker.storage import check_output

__all__: list[str] = []

logger = logging.getLogger(__name__)


def _registered(name: str) -> bool:
    # A worker has imported every task module it runs (-I included): an on_done name
    # missing from its registry would be dropped on receipt, so it is reported instead.
    return name in app.tasks


@worker_init.connect
def _an_engine_that_knows_the_worker_task_registry(**_: Any) -> None:
    reset_engine(registered=_registered)


@worker_process_init.connect
def _fresh_clients_after_fork(**_: Any) -> None:
    # Connections and pools made before a prefork worker forked belong to the parent.
    reset_engine(registered=_registered)


@worker_init.connect
def _refuse_to_work_without_a_writable_output(**_: Any) -> None:
    # A worker that could not deliver a clip must not submit (and pay for) any job.
    try:
        checked = check_output(get_settings())
    except StorageError as exc:
        logger.critical("this worker will not start: the output is not writable: %s", exc)
        raise SystemExit(3) from None
    logger.info("output writable: %s", checked)


@worker_ready.connect
def _check_the_webhook_receiver(**_: Any) -> None:
    # In a thread: the check may take seconds, and the worker is already taking tasks.
    def check() -> None:
        check_at_worker_start(get_engine())

    if get_settings().webhook_base_url:
        threading.Thread(target=check, name="webhook-self-check", daemon=True).start()


_sweep: list[SweepLoop] = []
_LEVELS = {"warn": logging.WARNING, "fail": logging.ERROR}


@worker_init.connect
def _say_which_redis_when_unset(**_: Any) -> None:
    # Never silently someone else's Redis: the default is named, with the fix.
    if get_settings().redis_url is None:
        logger.warning(
            "REDIS_URL is not set: this worker uses %s, the default; set REDIS_URL to the "
            "fleet's Redis", DEFAULT_REDIS_URL,
        )  # fmt: skip


@worker_ready.connect
def _say_when_redis_may_forget(**_: Any) -> None:
    # An evicting or non-persistent Redis drops paid jobs: one loud line at every start. The
    # replicas a claim waits for are counted now, at start (unless the setting says).
    settings, engine = get_settings(), get_engine()
    try:
        findings = durability_findings(
            engine.redis, sentinel=is_sentinel(settings.redis_url or ""),
            min_replicas=settings.redis_min_replicas, wait_ms=settings.redis_wait_ms,
        )  # fmt: skip
        engine.store.durability.replicas  # noqa: B018 - read once, here
    except Exception as exc:
        if not is_redis_outage(exc):
            raise
        return  # Redis went away again; the next start says it
    line = forgetful_redis_line(findings)
    if line:
        logger.error("%s", line)
    for finding in findings:
        if finding.name == "failover" and finding.status in ("warn", "fail"):
            logger.log(_LEVELS[finding.status], "failover safety: %s", finding.detail)


@worker_ready.connect
def _start_the_sweep(sender: Any = None, **_: Any) -> None:
    # Every worker takes its turn at the sweep (worker/job/sweep_loop.py), so no single
    # process, and no process supervisor, is needed to keep jobs moving.
    node = str(getattr(sender, "hostname", None) or app.conf.get("worker_name") or "worker")
    _sweep.append(SweepLoop(get_engine, node=node).start())


@worker_shutdown.connect
def _stop_the_sweep(**_: Any) -> None:
    while _sweep:
        _sweep.pop().stop()
