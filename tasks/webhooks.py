"""The thin task behind a delivered webhook: re-fetch the named task, move the job.

The web handler enqueues ``relaydance.webhook(job_id, task_id)`` and answers at once;
the work, and every decision, is in :func:`worker.webhook_step.on_webhook`. When it says
``next``, this task sends the job's chain from its current state, as ``relaydance.resume``
does, so the download starts without another trip through the queue.
"""

from __future__ import annotations

import logging

from celery import Task
from celery.exceptions import Ignore

from tasks.canvas import chain_for
from worker import app
from worker.engine import get_engine
from worker.webhook_health import note_webhook_received
from worker.webhook_step import on_webhook

__all__ = ["webhook"]

logger = logging.getLogger(__name__)


@app.task(bind=True, name="relaydance.webhook", max_retries=None)
def webhook(self: Task, job_id: str, task_id: str | None = None, attempt: int = 0) -> None:
    """Verify the remote task a webhook named, by fetching it, and move the job."""
    engine = get_engine()
    note_webhook_received(engine, job_id)  # the provider reached us: not a missed delivery
    outcome = on_webhook(engine, job_id, task_id=task_id, attempt=attempt)
    if outcome.action == "next":
        # Straight to the chain (as relaydance.resume would), one queue trip sooner. The
        # chain waiting on the safety poll stops when that poll finds the job past it.
        job = engine.store.get(job_id)
        signature = chain_for(job) if job is not None and not job.is_final else None
        if signature is not None:
            signature.apply_async()
        return
    if outcome.action == "stop":
        logger.debug("job %s relaydance.webhook: %s", job_id, outcome.reason)
        raise Ignore()
    raise self.retry(
        args=(job_id, task_id),
        kwargs={"attempt": outcome.kwargs.get("attempt", attempt)},
        countdown=outcome.countdown,
        max_retries=None,
    )
