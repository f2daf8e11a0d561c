"""Thin Celery tasks: parse ids, call one step in ``worker.job.pipeline``, map its outcome.

:func:`follow` is the one mapping of a step's outcome to Celery: ``next`` sends the job's
next step (:func:`worker.job.advance.advance`: read from the state table, timed from the
record, so the first poll after a submission waits on the broker for its recorded due
time), ``stop`` ends quietly (:class:`~celery.exceptions.Ignore`), ``again`` re-sends this
step by countdown with ``self.retry``. No task ever sleeps.

A step that meets a Redis outage (a restart, a failover's election) is sent again by
countdown with the same arguments; every change it makes is a compare-and-set, so a
retry that finds its claim already taken does nothing. If even the retry cannot be sent
(the broker is on the same Redis), Celery drops the message and the sweeper resumes the
job from its record once Redis answers: the record, not the message, keeps it alive.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import Task
from celery.exceptions import Ignore

from config import task_names as names
from worker import app
from worker.infra.outage import is_redis_outage
from worker.job import pipeline
from worker.job.advance import advance, advance_ids, after_step
from worker.job.engine import get_engine
from worker.job.notify import notify_final
from worker.job.pipeline import Outcome
from worker.job.step import backoff, grant_waiters
from worker.job.sweep_loop import run_sweep

__all__ = [
    "confirm_task",
    "download",
    "finish",
    "follow",
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


def _run(
    task: Task, step: Callable[..., Outcome], job_id: str, *, after: str | None, **kwargs: Any
) -> None:
    try:
        outcome = step(get_engine(), job_id, **kwargs)
    except Exception as exc:
        if not is_redis_outage(exc):
            raise
        outcome = _redis_outage(task, job_id, exc)
    follow(task, outcome, job_id, after=after, **kwargs)


def _redis_outage(task: Task, job_id: str, exc: BaseException) -> Outcome:
    """Send the step again by countdown: a Redis outage is a pause, never a failed job."""
    delay = backoff(1)  # a restart takes seconds; a longer outage is the sweeper's
    logger.warning(
        "job %s %s met a Redis outage (%s); trying again in %.1fs (or the sweeper resumes it)",
        job_id, task.name, type(exc).__name__, delay,
    )  # fmt: skip
    return Outcome("again", countdown=delay)


def follow(
    task: Task, outcome: Outcome, job_id: str, *, after: str | None = None, **kwargs: Any
) -> None:
    """Do what a step's outcome says; ``after`` is the step just run (None for a task
    that is no step), ``kwargs`` are the task's own, kept on a retry."""
    if outcome.action == "next":
        # A chain an earlier release sent still carries its next steps: Celery sends them.
        if not task.request.chain:
            after_step(get_engine(), outcome, job_id, after=after)
        return
    if outcome.action == "stop":
        logger.debug("job %s %s: %s", job_id, task.name, outcome.reason)
        raise Ignore()
    raise task.retry(
        args=(),  # everything goes by name, also for a task first sent with positional args
        countdown=outcome.countdown,
        kwargs={"job_id": job_id, **kwargs, **outcome.kwargs},
        max_retries=None,
        kwargsrepr=getattr(task.request, "kwargsrepr", None) or f"job={job_id}",
    )


@app.task(bind=True, name=names.PREPARE, max_retries=None)
def prepare(self: Task, job_id: str, seq: int, attempt: int = 0) -> None:
    """Upload local reference files."""
    _run(self, pipeline.prepare, job_id, after="prepare", seq=seq, attempt=attempt)


@app.task(bind=True, name=names.SUBMIT, max_retries=None)
def submit(self: Task, job_id: str, seq: int, attempt: int = 0) -> None:
    """Take a slot and submit the job once."""
    _run(self, pipeline.submit, job_id, after="submit", seq=seq, attempt=attempt)


@app.task(bind=True, name=names.POLL, max_retries=None)
def poll(self: Task, job_id: str, seq: int, n: int = 0, attempt: int = 0) -> None:
    """Poll the remote task; reschedules itself by countdown until it is final."""
    _run(self, pipeline.poll, job_id, after="poll", seq=seq, n=n, attempt=attempt)


@app.task(bind=True, name=names.DOWNLOAD, max_retries=None)
def download(self: Task, job_id: str, seq: int, attempt: int = 0) -> None:
    """Download the finished clip (or stills); the download finishes the job. The clips
    a still made ready go on in this thread (:func:`worker.job.pipeline.ready_clips_here`)."""
    with pipeline.ready_clips_here(get_engine):
        _run(self, pipeline.download, job_id, after="download", seq=seq, attempt=attempt)


@app.task(name=names.FINISH)
def finish(job_id: str, seq: int) -> None:
    """An earlier release's last step, kept for one release for the messages it queued:
    a current one moves its job on (the download finishes a job now)."""
    engine = get_engine()
    job = engine.store.get(job_id)
    if job is not None and job.seq == seq:
        advance(engine, job)


@app.task(bind=True, name=names.CONFIRM_TASK, max_retries=None)
def confirm_task(self: Task, job_id: str, task_id: str, claim: int, tries: int = 0) -> None:
    """Make a submission's recorded task id durable on the Redis replicas; a task id
    recorded again after a failover moves its job on."""
    _run(self, pipeline.confirm_task, job_id, after=None, task_id=task_id, claim=claim,
         tries=tries)  # fmt: skip


@app.task(name=names.RESUME)
def resume(job_id: str) -> None:
    """Move a job on from its current state."""
    advance_ids(get_engine(), [job_id])


@app.task(name=names.RESUME_MANY)
def resume_many(job_ids: list[str]) -> int:
    """Move each job of a batch's chunk on; returns how many steps were sent."""
    with app.producer_or_acquire() as producer:  # one producer for the whole chunk
        return advance_ids(get_engine(), job_ids, producer=producer)


@app.task(name=names.GRANT)
def grant(alias: str) -> None:
    """Hand free slots of a key to the jobs at the head of its line."""
    grant_waiters(get_engine(), alias)


@app.task(name=names.NOTIFY)
def notify(job_id: str) -> str:
    """Send a final job's summary to its on_done task (checked against this worker)."""
    return notify_final(get_engine(), job_id, hand_off=False)


@app.task(name=names.SWEEP)
def sweep() -> dict[str, int]:
    """Resume overdue jobs and fill free slots, unless another sweep holds the lock.

    Workers sweep by themselves now (worker/job/sweep_loop.py); the task stays for the
    messages an earlier release's beat left in the queue.
    """
    report = run_sweep(get_engine())
    if report is None:
        return {"resumed": 0, "granted": 0}
    return {"resumed": len(report.resumed), "granted": len(report.granted)}
