"""The producer API: what apps (Django, Flask, scripts) and the CLI call.

::

    from worker.api import enqueue_render, get_job, wait, cancel, clip_url, retake
    from worker.api import enqueue_batch, get_batch, wait_batch, cancel_batch

    jobs.py     single jobs: enqueue, retake, get, wait, cancel, resubmit, clip_url
    checks.py   every check an enqueue makes, made once (check_render)
    batches.py  batches: enqueue, status, wait, cancel, resume, report

Enqueueing follows one protocol for single jobs and batches (:mod:`worker.job.enqueue`).
``tasks`` re-exports these names, so ``from tasks import enqueue_render`` keeps working.
"""

from __future__ import annotations

from worker.api.batches import (
    batch_report,
    cancel_batch,
    enqueue_batch,
    enqueue_batch_file,
    get_batch,
    resume_batch,
    wait_batch,
)
from worker.api.checks import CheckedRender, check_render
from worker.api.jobs import (
    JobNotFound,
    cancel,
    clip_url,
    enqueue_checked,
    enqueue_render,
    get_job,
    new_job_id,
    resubmit,
    retake,
    wait,
)

__all__ = [
    "CheckedRender",
    "JobNotFound",
    "batch_report",
    "cancel",
    "cancel_batch",
    "check_render",
    "clip_url",
    "enqueue_batch",
    "enqueue_batch_file",
    "enqueue_checked",
    "enqueue_render",
    "get_batch",
    "get_job",
    "new_job_id",
    "resubmit",
    "resume_batch",
    "retake",
    "wait",
    "wait_batch",
]
