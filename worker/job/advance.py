"""Moving a job on: the one place that decides and sends a job's next step.

The next step is read from the state machine's plan (:func:`worker.job.states.steps_from`)
for the job's state, and it leaves when the record says: a poll waits for the due time
its scheduling step recorded, never polling early; any other step goes at once. One
message is sent, for one step; when that step is done its task calls :func:`advance`
again with the job as the step left it. So a job moves the same way whoever moves it:
a step that finished, a verified webhook, the sweeper, a job given a slot, a batch's
chunk, an operator's resubmit, the producer's enqueue.

Every message carries the job's ``seq``: a step that finds the record at another seq,
or in a state it does not act in, does nothing, so a duplicate is harmless.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from config.task_names import STEP_TASKS
from worker.job.engine import Engine
from worker.job.record import Job, JobKind
from worker.job.states import IN_LINE, steps_from
from worker.render.request import STILL_REF, RenderRequest, is_url

logger = logging.getLogger(__name__)


class Outcome(Protocol):
    """What a step said (:class:`worker.job.step.Outcome`, which imports this module)."""

    @property
    def action(self) -> str: ...
    @property
    def countdown(self) -> float: ...
    @property
    def reason(self) -> str: ...
    @property
    def kwargs(self) -> dict[str, Any]: ...
    @property
    def job(self) -> Job | None: ...


__all__ = [
    "Message", "advance", "advance_ids", "after_step", "carry_on", "describe", "needs_prepare",
    "next_message", "plan_for",
]  # fmt: skip


@dataclass(frozen=True)
class Message:
    """A step's message: its task, its arguments, when it leaves, and what Flower shows."""

    task: str
    args: tuple[Any, ...]
    countdown: float | None
    shown: str


def plan_for(job: Job, *, after: str | None = None, uploads: bool | None = None) -> list[str]:
    """The steps still to run for the job from its state; those after ``after`` (the step
    just done) when the state still plans it (a prepare leaves the job in line).
    ``uploads`` (whether it has urls to make), when the caller knows, spares parsing the
    request again."""
    if uploads is None:
        uploads = needs_prepare(job, now=time.time())
    steps = steps_from(job.state, uploads=uploads, kind=job.kind)
    if after in steps:
        steps = steps[steps.index(after) + 1 :]
    return steps


def needs_prepare(job: Job, *, now: float) -> bool:
    """Whether a clip in line has urls to make before its POST (:mod:`worker.job.prepare`):
    a local file not uploaded, a still named with no trust recorded (a retake), or urls
    past their trust (``inputs_until``)."""
    if job.kind is not JobKind.VIDEO or job.state not in IN_LINE:
        return False
    if job.inputs_until is not None and now >= job.inputs_until:
        return True
    sources = [source for _, source in RenderRequest.model_validate(job.request).media()]
    made = {*job.uploaded, *job.media_urls}
    if any(not is_url(source) and source not in made for source in sources):
        return True
    return job.inputs_until is None and any(STILL_REF.fullmatch(source) for source in sources)


def describe(job: Job) -> str:
    """What Flower shows for a step: job id, model and a prompt excerpt, never a secret."""
    prompt = str(job.request.get("prompt", ""))
    excerpt = prompt if len(prompt) <= 40 else prompt[:39] + "…"
    return f"job={job.id} model={job.request.get('model')} prompt={excerpt!r}"


def next_message(
    job: Job | None,
    *,
    after: str | None = None,
    attempt: int = 0,
    countdown: float | None = None,
    uploads: bool | None = None,
) -> Message | None:
    """The message of the job's next step, or None (final, or a state no step moves).

    ``attempt`` and ``countdown`` are the step's own: a step this process already claimed
    goes on as its retry would. A poll otherwise waits for the job's recorded due time.
    ``uploads`` as for :func:`plan_for`.
    """
    if job is None or job.is_final:
        return None
    steps = plan_for(job, after=after, uploads=uploads)
    if not steps:
        return None
    step = steps[0]
    args: tuple[Any, ...] = (job.id, job.seq, attempt)
    if step == "poll":  # the poll's claim counts from the job's polls so far
        args = (job.id, job.seq, job.poll_count, attempt)
    wait = countdown
    if step == "poll" and job.next_due is not None and not countdown:
        wait = job.next_due - time.time()  # the schedule the step before it recorded
    return Message(STEP_TASKS[step], args, wait if wait and wait > 0 else None, describe(job))


def advance(
    engine: Engine,
    job: Job | None,
    *,
    after: str | None = None,
    attempt: int = 0,
    countdown: float | None = None,
    producer: Any = None,
    uploads: bool | None = None,
) -> str | None:
    """Send the job's next step (see :func:`next_message`); the task sent, or None."""
    message = next_message(job, after=after, attempt=attempt, countdown=countdown, uploads=uploads)
    if message is None:
        return None
    engine.send(
        message.task,
        *message.args,
        countdown=message.countdown,
        shown=message.shown,
        producer=producer,
    )
    return message.task


def advance_ids(engine: Engine, job_ids: Iterable[str], *, producer: Any = None) -> int:
    """Move each job on from its record (read in one round trip); how many were sent."""
    ids = list(job_ids)
    if not ids:
        return 0
    jobs = engine.store.get_many(ids) if len(ids) > 1 else [engine.store.get(ids[0])]
    return sum(advance(engine, job, producer=producer) is not None for job in jobs)


def after_step(engine: Engine, outcome: Outcome, job_id: str, *, after: str | None) -> None:
    """Send the step after ``after`` for a step that said ``next``: the job as the step
    left it, when it said, so the record is not read again."""
    advance(engine, outcome.job or engine.store.get(job_id), after=after)


def carry_on(engine: Engine, outcome: Outcome, job_id: str, *, after: str) -> None:
    """Do what the outcome of step ``after``, run outside its own task, says: ``next``
    sends the step after it, ``again`` sends the step itself by countdown, ``stop`` ends."""
    if outcome.action == "next":
        after_step(engine, outcome, job_id, after=after)
    elif outcome.action == "again":
        attempt = int(outcome.kwargs.get("attempt", 1))
        advance(engine, engine.store.get(job_id), attempt=attempt, countdown=outcome.countdown)
    else:
        logger.debug("job %s %s: %s", job_id, after, outcome.reason)
