"""The two thin tasks batches and schedules need; the batch API stays importable here.

Tasks: ``relaydance.batch_job_done`` (every batch job's ``on_done``: settles the job in
its batch, indexes it for ``--reuse``, forwards to the batch's own ``on_done``) and
``relaydance.batch_run`` (what beat sends for a schedule). Producers use
:mod:`worker.api` (``enqueue_batch``, ``get_batch``, ``wait_batch``, ``cancel_batch``...);
the names stay importable from here so that no producer's code breaks.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from config.task_names import BATCH_JOB_DONE, BATCH_RUN
from worker import app
from worker.api.batches import (
    batch_report,
    batches,
    cancel_batch,
    enqueue_batch,
    enqueue_batch_file,
    get_batch,
    resume_batch,
    wait_batch,
)
from worker.batch.schedules import Schedules
from worker.job.engine import get_engine

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


@app.task(name=BATCH_JOB_DONE)
def batch_job_done(summary: dict[str, Any]) -> None:
    """A batch's job is done: settle it in its batch and pass the news on."""
    batches().job_done(summary)


@app.task(name=BATCH_RUN)
def batch_run(schedule: str, at: str | None = None) -> str | None:
    """Create (or continue) this run's batch of a schedule; ``at`` names the run's time."""
    when = datetime.fromisoformat(at) if at else None
    return Schedules(get_engine(), app).run(schedule, at=when)
