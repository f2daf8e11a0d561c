"""Thin Celery tasks: parse ids, call one step in ``worker.job.pipeline``, map its outcome.

:func:`follow` is the one mapping of a step's outcome to Celery: ``next`` returns (Celery
sends the chain's next step, after the outcome's countdown when it has one: the first
poll after a submission), ``stop`` ends the chain quietly
(:class:`~celery.exceptions.Ignore`), ``again`` re-sends this step by countdown with
``self.retry``, which keeps the rest of the chain. No task ever sleeps.

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

from tasks.canvas import send_chain
from worker import app
from worker.infra.outage import is_redis_outage
from worker.job import pipeline
from worker.job.engine import Engine, get_engine
from worker.job.failover import CONFIRM_TASK
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


def _run(task: Task, step: Callable[..., Outcome], job_id: str, **kwargs: Any) -> None:
    try:
        outcome = step(get_engine(), job_id, **kwargs)
    except Exception as exc:
        if not is_redis_outage(exc):
            raise
        outcome = _redis_outage(task, job_id, exc)
    follow(task, outcome, job_id, **kwargs)


def _redis_outage(task: Task, job_id: str, exc: BaseException) -> Outcome:
    """Send the step again by countdown: a Redis outage is a pause, never a failed job."""
    delay = backoff(1)  # a restart takes seconds; a longer outage is the sweeper's
    logger.warning(
        "job %s %s met a Redis outage (%s); trying again in %.1fs (or the sweeper resumes it)",
        job_id, task.name, type(exc).__name__, delay,
    )  # fmt: skip
    return Outcome("again", countdown=delay)


def follow(task: Task, outcome: Outcome, job_id: str, **kwargs: Any) -> None:
    """Do what a step's outcome says; ``kwargs`` are the task's own, kept on a retry."""
    if outcome.action == "next":
        links = task.request.chain
        if outcome.countdown > 0 and links:
            # The chain's next message leaves when this task returns: it waits on the
            # broker for the time the step scheduled (and recorded), never polling early.
            links[-1] = app.signature(links[-1]).set(countdown=outcome.countdown)
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


def resume_job(job_id: str) -> bool:
    """The one resume path: send the job's chain from its current state, if it has one."""
    return send_chain(get_engine().store.get(job_id))


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


@app.task(bind=True, name=CONFIRM_TASK, max_retries=None)
def confirm_task(self: Task, job_id: str, task_id: str, claim: int, tries: int = 0) -> None:
    """Make a submission's recorded task id durable on the Redis replicas."""
    _run(self, _confirmed, job_id, task_id=task_id, claim=claim, tries=tries)


def _confirmed(engine: Engine, job_id: str, **kwargs: Any) -> Outcome:
    outcome = pipeline.confirm_task(engine, job_id, **kwargs)
    if outcome.action == "next":  # recorded again after a failover: its chain goes on
        send_chain(engine.store.get(job_id))
        return Outcome("stop", reason="recorded again; chain sent")
    return outcome


@app.task(name="relaydance.resume")
def resume(job_id: str) -> None:
    """Send the chain of steps that takes a job from its current state to done."""
    resume_job(job_id)


@app.task(name="relaydance.resume_many")
def resume_many(job_ids: list[str]) -> int:
    """Send each job's chain (a batch's chunk); returns how many were sent."""
    sent = 0
    jobs = get_engine().store.get_many(list(job_ids))
    with app.producer_or_acquire() as producer:  # one producer for the whole chunk
        for job in jobs:
            sent += send_chain(job, producer=producer)
    return sent


@app.task(name="relaydance.grant")
def grant(alias: str) -> None:
    """Hand free slots of a key to the jobs at the head of its line."""
    grant_waiters(get_engine(), alias)


@app.task(name="relaydance.notify")
def notify(job_id: str) -> str:
    """Send a final job's summary to its on_done task (checked against this worker)."""
    return notify_final(get_engine(), job_id, hand_off=False)


@app.task(name="relaydance.sweep")
def sweep() -> dict[str, int]:
    """Resume overdue jobs and fill free slots, unless another sweep holds the lock.

    Workers sweep by themselves now (worker/job/sweep_loop.py); the task stays for the
    messages an earlier release's beat left in the queue.
    """
    report = run_sweep(get_engine())
    if report is None:
        return {"resumed": 0, "granted": 0}
    return {"resumed": len(report.resumed), "granted": len(report.granted)}
