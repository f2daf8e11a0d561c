"""The fleet's Celery app with Celery's own ``rate_limit`` on submit: the baseline.

    celery -A baseline_app worker ...    (PYTHONPATH includes bench/)

Celery keeps one token bucket per task type in each worker, so the limit applies per
worker, not per API key: what a user would configure to keep a fleet near a provider's
physical limit without per-key concurrency slots. The rate comes from
``BENCH_SUBMIT_RATE_LIMIT`` (a Celery rate string, default ``7.5/s``), and is added to the
fleet's own annotations (time limits) when Celery first reads its configuration.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

from worker import app

__all__ = ["RATE_ENV", "app"]

RATE_ENV = "BENCH_SUBMIT_RATE_LIMIT"


def _add_rate_limit(conf: Any) -> None:
    annotations = dict(conf.task_annotations or {})
    submit = dict(annotations.get("relaydance.submit", {}))
    submit["rate_limit"] = os.environ.get(RATE_ENV, "7.5/s")
    annotations["relaydance.submit"] = submit
    conf.task_annotations = annotations


def _on_configure(sender: Celery, **_: Any) -> None:
    # Annotations are read when tasks are bound, which comes after the configuration.
    _add_rate_limit(sender.conf)


app.on_after_configure.connect(_on_configure, weak=False)


if app.configured:  # pragma: no cover - only when something read the config first
    _add_rate_limit(app.conf)
