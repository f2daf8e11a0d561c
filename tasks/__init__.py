"""Thin Celery tasks; the producer API's names, kept importable from here.

The producer API lives in :mod:`worker.api`; earlier releases documented these imports,
and they keep working::

    from tasks import enqueue_render, get_job, wait, cancel, clip_url, retake
"""

from __future__ import annotations

from tasks.api import (
    JobNotFound,
    cancel,
    clip_url,
    enqueue_render,
    get_job,
    new_job_id,
    resubmit,
    retake,
    wait,
)
from tasks.batches import (
    batch_report,
    cancel_batch,
    enqueue_batch,
    get_batch,
    resume_batch,
    wait_batch,
)

__all__ = [
    "JobNotFound",
    "batch_report",
    "cancel",
    "cancel_batch",
    "clip_url",
    "enqueue_batch",
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
