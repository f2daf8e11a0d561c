"""The thin task behind a delivered webhook: re-fetch the named task, move the job.

The web handler enqueues ``relaydance.webhook(job_id, task_id)`` and answers at once;
the work, and every decision, is in :func:`worker.job.webhook.on_webhook`. Its outcome
is followed as any step's (:func:`tasks.render.follow`): on ``next`` the job's next step
is sent (:func:`worker.job.advance.advance`). One exception saves a provider GET: when
the task turned out final and succeeded, the next step is the download, and the url the
verifying fetch returned is still fresh, the download runs here, with that url (a
signed url never goes into a message). It runs on the delivery queue, never behind a
burst of submissions.
"""

from __future__ import annotations

from celery import Task

from config.task_names import WEBHOOK
from tasks.render import follow
from worker import app
from worker.job import deliver as delivery
from worker.job.advance import carry_on, plan_for
from worker.job.engine import get_engine
from worker.job.reachability import note_webhook_received
from worker.job.webhook import on_webhook

__all__ = ["webhook"]


@app.task(bind=True, name=WEBHOOK, max_retries=None)
def webhook(
    self: Task, job_id: str, task_id: str | None = None, attempt: int = 0, claim: int | None = None
) -> None:
    """Verify the remote task a webhook named, by fetching it, and move the job.

    ``claim`` is the submission the delivery's callback URL was made for (proven by the
    receiver): only a task of that submission may be adopted."""
    engine = get_engine()
    note_webhook_received(engine, job_id)  # the provider reached us: not a missed delivery
    outcome = on_webhook(engine, job_id, task_id=task_id, attempt=attempt, claim=claim)
    job = outcome.job
    if outcome.action == "next" and outcome.url and job and plan_for(job) == ["download"]:
        # The clip's url was read a moment ago to verify the webhook: download with it
        # here, so the job costs one provider GET, and on this (delivery) queue.
        done = delivery.download(engine, job.id, seq=job.seq, url=outcome.url)
        carry_on(engine, done, job.id, after="download")  # a retry fetches a fresh url
        return
    follow(self, outcome, job_id, task_id=task_id, attempt=attempt, claim=claim)
