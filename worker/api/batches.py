"""Batches from Python and the CLI: enqueue, inspect, wait, cancel, resume, report.

::

    from worker.api import enqueue_batch, wait_batch

    submission = enqueue_batch([{"model": ..., "prompt": ...}, ...], budget=25.0)
    status = wait_batch(submission.batch_id, timeout=3600)

A batch's jobs are enqueued a chunk at a time by the one protocol of single jobs
(:mod:`worker.job.enqueue`): written pending, one ``relaydance.resume_many`` sent, then
confirmed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from worker.api.jobs import JobNotFound
from worker.api.jobs import cancel as cancel_job
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
from worker.job.engine import get_engine
from worker.render.request import RenderRequest

__all__ = [
    "batch_report",
    "cancel_batch",
    "enqueue_batch",
    "enqueue_batch_file",
    "get_batch",
    "resume_batch",
    "wait_batch",
]


def batches() -> Batches:
    """The batches of the process-wide engine."""
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
    A :class:`~worker.batch.ParsedBatch` (already read and checked) is taken as it is.
    """
    if isinstance(requests, ParsedBatch):
        parsed = requests
    else:  # a request may name its own "key"; the others are checked as ``key``'s provider
        parsed = parse_records(requests, key=key)
    return batches().submit(
        parsed, key=key, budget=budget, name=name, reuse=reuse, skip_invalid=skip_invalid,
        on_done=on_done, output_name=output_name,
    )  # fmt: skip


def enqueue_batch_file(path: str | Path, **options: Any) -> Submission:
    """:func:`enqueue_batch` for a JSON Lines or CSV file (with an optional ``key`` column)."""
    return enqueue_batch(read_batch_file(path, key=options.get("key", "default")), **options)


def get_batch(batch_id: str) -> BatchStatus:
    """A batch's status by id or name; raises :class:`~worker.batch.BatchNotFound`."""
    return batches().status(batch_id)


def wait_batch(
    batch_id: str,
    *,
    timeout: float = 3600.0,
    interval: float = 0.5,
    on_progress: Callable[[BatchStatus], None] | None = None,
) -> BatchStatus:
    """Block until every line of the batch is final; :class:`TimeoutError` after ``timeout``."""
    return batches().wait(batch_id, timeout=timeout, interval=interval, on_progress=on_progress)


def _cancel_one(job_id: str) -> bool:
    try:
        return cancel_job(job_id)
    except JobNotFound:
        return False


def cancel_batch(batch_id: str) -> int:
    """Stop the batch and cancel its jobs not final yet; returns how many were canceled."""
    return batches().cancel(batch_id, cancel_job=_cancel_one)


def resume_batch(batch_id: str, *, budget: float | None = None) -> Submission:
    """Re-queue failed, canceled, lost and budget-skipped lines (optionally with a new cap)."""
    return batches().resume(batch_id, budget=budget)


def batch_report(batch_id: str) -> tuple[BatchStatus, list[ReportRow]]:
    """The batch's status and one report row per line."""
    return build_report(batches(), batch_id)
