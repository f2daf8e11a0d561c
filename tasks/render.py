"""Thin Celery tasks: parse ids, call one step in ``worker.job.pipeline``, map its outcome.

``next`` returns (Celery sends the chain's next step), ``stop`` ends the chain quietly
(:class:`~celery.exceptions.Ignore`), ``again`` re-sends this step by countdown with
``self.retry``, which keeps the rest of the chain. No task ever sleeps.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import Task
from celery.exceptions import Ignore

from tasks.canvas import chain_for
from worker import app
from worker.job import pipeline
from worker.job.engine import get_engine
from worker.job.notify import notify_final
from worker.job.pipeline import Outcome
from worker.job.sweeper import sweep as sweep_jobs

__all__ = [
    "download",
    "finish",
    "grant",
    "notify",
    "poll",
    "prepare",
    "resume",
    "resume_many",
    "submit",
    "sweep",
]

logger = logging.getLogger(__name__)


def _run(task: Task, step: Callable[..., Outcome], job_id: str, **kwargs: Any) -> None:
    outcome = step(get_engine(), job_id, **kwargs)
    if outcome.action == "next":
        return
    if outcome.action == "stop":
        logger.debug("job %s %s: %s", job_id, task.name, outcome.reason)
        raise Ignore()
    retry_kwargs = {"job_id": job_id, **kwargs, **outcome.kwargs}
    raise task.retry(
        countdown=outcome.countdown,
        kwargs=retry_kwargs,
        max_retries=None,
        kwargsrepr=getattr(task.request, "kwargsrepr", None) or f"job={job_id}",
    )


@app.task(bind=True, name="relaydance.prepare", max_retries=None)
def prepare(self: Task, job_id: str, seq: int, attempt: int = 0) -> None:
    """Upload local reference files."""
    _run(self, pipeline.prepare, job_id, seq=seq, attempt=attempt)


@app.task(bind=True, name="relaydance.submit", max_retries=None)
def submit(self: Task, job_id: str, seq: int, attempt: int = 0) -> None:
    """Take a slot and submit the job once."""
    _run(self, pipeline.submit, job_id, seq=seq, attempt=attempt)


@app.task(bind=True, name="relaydance.poll", max_retries=None)
def poll(self: Task, job_id: str, seq: int, n: int = 0, attempt: int = 0) -> None:
    """Poll the remote task; reschedules itself by countdown until it is final."""
    _run(self, pipeline.poll, job_id, seq=seq, n=n, attempt=attempt)


@app.task(bind=True, name="relaydance.download", max_retries=None)
def download(self: Task, job_id: str, seq: int, attempt: int = 0) -> None:
    """Download the finished clip."""
    _run(self, pipeline.download, job_id, seq=seq, attempt=attempt)


@app.task(bind=True, name="relaydance.finish", max_retries=None)
def finish(self: Task, job_id: str, seq: int) -> None:
    """Mark the job done and notify the producer."""
    _run(self, pipeline.finish, job_id, seq=seq)


@app.task(name="relaydance.resume")
def resume(job_id: str) -> None:
    """Send the chain of steps that takes a job from its current state to done."""
    job = get_engine().store.get(job_id)
    if job is None or job.is_final:
        return
    signature = chain_for(job)
    if signature is not None:
        signature.apply_async()


@app.task(name="relaydance.resume_many")
def resume_many(job_ids: list[str]) -> int:
    """Send each job's chain (a batch's chunk); returns how many were sent."""
    sent = 0
    jobs = get_engine().store.get_many(list(job_ids))
    with app.producer_or_acquire() as producer:  # one producer for the whole chunk
        for job in jobs:
            signature = chain_for(job) if job is not None and not job.is_final else None
            if signature is not None:
                signature.apply_async(producer=producer)
                sent += 1
    return sent


@app.task(name="relaydance.grant")
def grant(alias: str) -> None:
    """Hand free slots of a key to the jobs at the head of its line."""
    engine = get_engine()
    for job_id in engine.limits.grant_waiters(alias):
        resume.delay(job_id)


@app.task(name="relaydance.notify")
def notify(job_id: str) -> str:
    """Send a final job's summary to its on_done task (checked against this worker)."""
    return notify_final(get_engine(), job_id, hand_off=False)


@app.task(name="relaydance.sweep")
def sweep() -> dict[str, int]:
    """Resume overdue jobs and fill free slots (run by beat)."""
    report = sweep_jobs(get_engine())
    return {"resumed": len(report.resumed), "granted": len(report.granted)}
