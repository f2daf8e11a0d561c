"""The canvas: the chain of steps that takes a job from its current state to ``done``."""

from __future__ import annotations

from typing import Any

from celery import chain
from celery.canvas import Signature

from worker import app
from worker.job.engine import Engine, get_engine
from worker.job.pipeline import first_poll_delay
from worker.job.record import Job, JobState
from worker.render.request import RenderRequest

__all__ = ["chain_for", "describe", "steps_for"]

S = JobState
# The download finishes the job itself (one task fewer per job).
_FROM: dict[JobState, list[str]] = {
    S.QUEUED: ["prepare", "submit", "poll", "download"],
    S.WAITING_FOR_SLOT: ["submit", "poll", "download"],
    S.SUBMITTING: ["submit", "poll", "download"],
    S.SUBMITTED: ["poll", "download"],
    S.RUNNING: ["poll", "download"],
    S.GENERATED: ["download"],
    S.DOWNLOADING: ["download"],
}


def steps_for(job: Job) -> list[str]:
    """The steps still to run for a job, from its current state."""
    steps = list(_FROM.get(job.state, []))
    if steps[:1] == ["prepare"] and not RenderRequest.model_validate(job.request).local_paths():
        steps = steps[1:]  # nothing to upload: skip a task
    if job.state is S.DOWNLOADING and job.downloaded:
        steps = ["finish"]
    return steps


def describe(job: Job) -> str:
    """What Flower shows for a step: job id, model and a prompt excerpt, never a secret."""
    prompt = str(job.request.get("prompt", ""))
    excerpt = prompt if len(prompt) <= 40 else prompt[:39] + "…"
    return f"job={job.id} model={job.request.get('model')} prompt={excerpt!r}"


def chain_for(
    job: Job, *, attempt: int = 0, countdown: float | None = None, engine: Engine | None = None
) -> Signature | None:
    """A chain of immutable step signatures for the job at its current ``seq``, or None.

    ``attempt`` and ``countdown`` apply to the first step: a step that already claimed
    the job in this process continues it, as its own retry would. ``engine`` (default:
    this process's) times the first poll.
    """
    shown = describe(job)
    steps = steps_for(job)
    signatures: list[Signature] = []
    for step in steps:
        kwargs: dict[str, Any] = {"job_id": job.id, "seq": job.seq}
        if attempt and not signatures:
            kwargs["attempt"] = attempt
        if step == "poll":
            kwargs["n"] = job.poll_count  # the poll claim counts from the job's polls so far
        sig = app.signature(f"relaydance.{step}", kwargs=kwargs, immutable=True)
        # The job record is the result: no producer waits on a result backend channel.
        sig = sig.set(argsrepr="()", kwargsrepr=shown, ignore_result=True)
        if step == "poll" and steps[0] in ("prepare", "submit"):
            # Celery sends a chain's next step when the previous one returns, with the
            # step's own options: the first poll then waits out the expected generation
            # time on the broker instead of running once early and rescheduling.
            request = job.request
            sig = sig.set(
                countdown=first_poll_delay(
                    engine or get_engine(), str(request["model"]), int(request["seconds"])
                )
            )
        if countdown and not signatures:
            sig = sig.set(countdown=countdown)
        signatures.append(sig)
    if not signatures:
        return None
    return signatures[0] if len(signatures) == 1 else chain(*signatures)
