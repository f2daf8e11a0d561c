"""The thin task behind a delivered webhook: re-fetch the named task, move the job.

The web handler enqueues ``relaydance.webhook(job_id, task_id)`` and answers at once;
the work, and every decision, is in :func:`worker.job.webhook.on_webhook`. When the
task turned out final and succeeded, this task downloads the clip itself with the url the
verifying fetch returned (one provider GET per job) and finishes the job; otherwise, on
``next``, it sends the job's chain from its current state, as ``relaydance.resume`` does.
It runs on the delivery queue, never behind a burst of submissions.
"""

from __future__ import annotations

import logging

from celery import Task

from tasks.canvas import send_chain
from tasks.render import follow
from worker import app
from worker.job import deliver as delivery
from worker.job.engine import Engine, get_engine
from worker.job.reachability import note_webhook_received
from worker.job.record import Job, JobState
from worker.job.webhook import on_webhook

__all__ = ["webhook"]

logger = logging.getLogger(__name__)


@app.task(bind=True, name="relaydance.webhook", max_retries=None)
def webhook(
    self: Task, job_id: str, task_id: str | None = None, attempt: int = 0, claim: int | None = None
) -> None:
    """Verify the remote task a webhook named, by fetching it, and move the job.

    ``claim`` is the submission the delivery's callback URL was made for (proven by the
    receiver): only a task of that submission may be adopted."""
    engine = get_engine()
    note_webhook_received(engine, job_id)  # the provider reached us: not a missed delivery
    outcome = on_webhook(engine, job_id, task_id=task_id, attempt=attempt, claim=claim)
    if outcome.action != "next":
        follow(self, outcome, job_id, task_id=task_id, attempt=attempt, claim=claim)
        return
    job = engine.store.get(job_id)
    if job is not None and outcome.url and job.state is JobState.GENERATED:
        # The clip's url was read a moment ago to verify the webhook: download with it
        # here, so the job costs one provider GET, and on this (delivery) queue.
        _deliver(engine, job, outcome.url)
        return
    # Straight to the chain (as relaydance.resume would), one queue trip sooner. The
    # chain waiting on the safety poll stops when that poll finds the job past it.
    send_chain(job)


def _deliver(engine: Engine, job: Job, url: str) -> None:
    """Download (which finishes the job) in this task; a retry goes on as a download task."""
    step = delivery.download(engine, job.id, seq=job.seq, url=url)
    if step.action == "again":  # e.g. the url was refused: the retry fetches a fresh one
        attempt = int(step.kwargs.get("attempt", 1))
        send_chain(engine.store.get(job.id), attempt=attempt, countdown=step.countdown)
