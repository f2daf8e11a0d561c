"""Thin Celery tasks and the producer API.

Producers (Django, Flask, scripts) use::

    from tasks import enqueue_render, get_job, wait, cancel
"""

from __future__ import annotations

from tasks.api import JobNotFound, cancel, enqueue_render, get_job, new_job_id, wait

__all__ = ["JobNotFound", "cancel", "enqueue_render", "get_job", "new_job_id", "wait"]
