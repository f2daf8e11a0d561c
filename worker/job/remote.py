"""Moving a job by what the provider says of its task, from a poll or a verified webhook.

Both the poll step (:mod:`worker.job.pipeline`) and the webhook step
(:mod:`worker.job.webhook`) end here, so a task's status moves a job the same way
whichever way it was learned, and every finished generation teaches the estimate.
"""

from __future__ import annotations

import time

from worker.job.counters import record_generated
from worker.job.engine import Engine
from worker.job.record import Billing, Job, JobState
from worker.job.states import AT_PROVIDER
from worker.job.step import Outcome, again, fail, log_transition, moved_on, release, stop
from worker.job.timing import next_poll_delay, sample_from
from worker.job.transitions import GENERATED, POLL_RUNNING
from worker.provider.dialects import RemoteTask, TaskStatus

__all__ = ["apply_remote", "charged"]

S = JobState


def apply_remote(
    engine: Engine, job: Job, task: RemoteTask, *, polls_done: int, by_webhook: bool = False
) -> Outcome:
    """Move a job by what the provider says of its task (from a poll or a verified webhook)."""
    now = time.time()
    # What the provider says it charged, when it says, is the job's actual spend.
    spent = {} if task.actual_cost is None else {"actual_cost": task.actual_cost}
    if task.status is TaskStatus.SUCCEEDED:
        return _generated(engine, job, task, spent, now=now, polls=polls_done, exact=by_webhook)
    if task.status is TaskStatus.FAILED:
        if spent:
            engine.store.update_fields(job.id, states=AT_PROVIDER, set=spent)
        if charged(task):
            # The provider says it charged for a failed task: the money is spent, never
            # given back to a budget.
            said = task.error or "the provider reported the generation failed"
            message = f"{said} (billed: the provider reports ${task.actual_cost:.4f} used)"
            return fail(engine, job, "generation_failed", message, billing=Billing.BILLED.value)
        message = task.error or "the provider reported the generation failed (not billed)"
        return fail(engine, job, "generation_failed", message, billing=Billing.NOT_BILLED.value)
    submitted_at = job.times.get("submitted", job.created_at)
    request = job.request
    delay = next_poll_delay(
        elapsed=now - submitted_at,
        estimate=engine.timing.estimate(str(request["model"]), int(request["seconds"])),
        minimum=engine.settings.poll_interval_min,
        maximum=engine.settings.poll_interval_max,
        hint=task.retry_after,
    )
    status = {"remote_status": task.raw_status}
    if task.status is TaskStatus.RUNNING:
        engine.store.apply(job.id, POLL_RUNNING, set=status, due=now + delay)
    else:
        engine.store.update_fields(job.id, states=AT_PROVIDER, set=status, due=now + delay)
    if job.state is S.SUBMITTED and task.status is TaskStatus.RUNNING:
        log_transition(job, "running")
    return again(delay, n=polls_done, attempt=0)


def _generated(
    engine: Engine, job: Job, task: RemoteTask, spent: dict[str, float], *, now: float,
    polls: int, exact: bool,
) -> Outcome:  # fmt: skip
    """The clip is ready: ``-> generated``, the slot goes back, the estimate learns."""
    applied, _ = engine.store.apply(
        job.id,
        GENERATED,
        set={"remote_status": task.raw_status, **spent},
        due=now + engine.settings.step_grace_seconds,
    )
    if not applied:
        return stop("already past generation")
    release(engine, job)
    _learn_duration(engine, job, polls_done=polls, now=now, exact=exact)
    cost = job.cost if task.actual_cost is None else task.actual_cost
    record_generated(engine, polls=polls, cost=cost)
    log_transition(job, "generated", polls=polls)
    return moved_on(job, S.GENERATED, remote_status=task.raw_status)


def charged(task: RemoteTask) -> bool:
    """Whether a failed task was billed after all: its provider reports spend above zero."""
    return task.actual_cost is not None and task.actual_cost > 0


def _learn_duration(engine: Engine, job: Job, *, polls_done: int, now: float, exact: bool) -> None:
    """Fold what this job says about its model's generation time into the estimate."""
    model, seconds = str(job.request["model"]), int(job.request["seconds"])
    # The POST's time (an adopted task was created by its POST, not by the adoption).
    intent, last = job.submit_intent_at, job.last_poll_at
    submitted_at = intent if intent else job.times.get("submitted", job.created_at)
    missed = last - submitted_at if polls_done > 1 and last else None
    estimate = engine.timing.estimate(model, seconds)
    sample, bracketed = sample_from(
        hit=now - submitted_at, last_miss=missed, estimate=estimate, exact=exact
    )
    engine.timing.record(model, seconds, sample, bracketed=bracketed)
