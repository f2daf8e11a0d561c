"""Batches from Python, and the two thin tasks batches and schedules need.

Producers use::

    from tasks.batches import enqueue_batch, get_batch, wait_batch, cancel_batch

    submission = enqueue_batch([{"model": ..., "prompt": ...}, ...], budget=25.0)
    status = wait_batch(submission.batch_id, timeout=3600)

Tasks: ``relaydance.batch_job_done`` (every batch job's ``on_done``: settles the job in
its batch, indexes it for ``--reuse``, forwards to the batch's own ``on_done``) and
``relaydance.batch_run`` (what beat sends for a schedule).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from config.task_names import BATCH_JOB_DONE, BATCH_RUN
from tasks.api import JobNotFound
from tasks.api import cancel as cancel_job
from worker import app
from worker.batch import (
    Batches,
    BatchStatus,
    ParsedBatch,
    ReportRow,
    Submission,
    parse_records,
    read_batch_file,
)
from worker.batch import batch_report as build_report
from worker.batch.schedules import Schedules
from worker.job.engine import get_engine
from worker.render.request import RenderRequest

__all__ = [
    "batch_job_done",
    "batch_report",
    "batch_run",
    "cancel_batch",
    "enqueue_batch",
    "enqueue_batch_file",
    "get_batch",
    "resume_batch",
    "wait_batch",
]

logger = logging.getLogger(__name__)


def _batches() -> Batches:
    return Batches(get_engine())


def enqueue_batch(
    requests: ParsedBatch | Iterable[Mapping[str, Any] | RenderRequest],
    *,
    key: str = "default",
    budget: float | None = None,
    name: str | None = None,
    reuse: bool = False,
    skip_invalid: bool = False,
    on_done: str | None = None,
    output_name: str | None = None,
) -> Submission:
    """Validate every request, then enqueue the batch; returns what was submitted.

    Raises :class:`~worker.batch.InvalidBatch` (nothing enqueued) when a request is
    invalid and ``skip_invalid`` is false. A ``name`` already used continues that batch.
    ``output_name`` names the clips by a template, e.g. ``"{batch}/{line:04d}-{slug}"``
    (see :mod:`worker.batch.naming`); every name is checked before anything is enqueued.
    """
    if isinstance(requests, ParsedBatch):
        parsed = requests
    else:  # a request may name its own "key"; the others are checked as ``key``'s provider
        parsed = parse_records(requests, key=key)
    return _batches().submit(
        parsed, key=key, budget=budget, name=name, reuse=reuse, skip_invalid=skip_invalid,
        on_done=on_done, output_name=output_name,
    )  # fmt: skip


def enqueue_batch_file(path: str | Path, **options: Any) -> Submission:
    """:func:`enqueue_batch` for a JSON Lines or CSV file (with an optional ``key`` column)."""
    return enqueue_batch(read_batch_file(path, key=options.get("key", "default")), **options)


def get_batch(batch_id: str) -> BatchStatus:
    """A batch's status by id or name; raises :class:`~worker.batch.BatchNotFound`."""
    return _batches().status(batch_id)


def wait_batch(
    batch_id: str,
    *,
    timeout: float = 3600.0,
    interval: float = 0.5,
    on_progress: Callable[[BatchStatus], None] | None = None,
) -> BatchStatus:
    """Block until every line of the batch is final; :class:`TimeoutError` after ``timeout``."""
    return _batches().wait(batch_id, timeout=timeout, interval=interval, on_progress=on_progress)


def _cancel_one(job_id: str) -> bool:
    try:
        return cancel_job(job_id)
    except JobNotFound:
        return False


def cancel_batch(batch_id: str) -> int:
    """Stop the batch and cancel its jobs not final yet; returns how many were canceled."""
    return _batches().cancel(batch_id, cancel_job=_cancel_one)


def resume_batch(batch_id: str, *, budget: float | None = None) -> Submission:
    """Re-queue failed, canceled, lost and budget-skipped lines (optionally with a new cap)."""
    return _batches().resume(batch_id, budget=budget)


def batch_report(batch_id: str) -> tuple[BatchStatus, list[ReportRow]]:
    """The batch's status and one report row per line."""
    return build_report(_batches(), batch_id)


@app.task(name=BATCH_JOB_DONE)
def batch_job_done(summary: dict[str, Any]) -> None:
    """A batch's job is done: settle it in its batch and pass the news on."""
    _batches().job_done(summary)


@app.task(name=BATCH_RUN)
def batch_run(schedule: str, at: str | None = None) -> str | None:
    """Create (or continue) this run's batch of a schedule; ``at`` names the run's time."""
    when = datetime.fromisoformat(at) if at else None
    return Schedules(get_engine(), app).run(schedule, at=when)
