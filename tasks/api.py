"""The producer API for single jobs, now in :mod:`worker.api`; these names stay importable
from here (and from ``tasks``) so that no producer's code breaks."""

from __future__ import annotations

from worker.api.jobs import (
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

__all__ = [
    "JobNotFound",
    "cancel",
    "clip_url",
    "enqueue_render",
    "get_job",
    "new_job_id",
    "resubmit",
    "retake",
    "wait",
]
