"""The canvas: the chain of steps that takes a job from its current state to ``done``.

The steps still to run come from the state machine (:mod:`worker.job.states`); the first
poll waits for the job's recorded due time, which the step that scheduled it (submit, or
the adoption of a task) wrote once. :func:`send_chain` is the one place a chain is sent.
"""

from __future__ import annotations

import time
from typing import Any

from celery import chain
from celery.canvas import Signature
from kombu.messaging import Producer

from worker import app
from worker.job.record import Job
from worker.job.states import steps_from
from worker.render.request import RenderRequest

__all__ = ["chain_for", "describe", "send_chain", "steps_for"]


def steps_for(job: Job, *, uploads: bool | None = None) -> list[str]:
    """The steps still to run for a job, from its current state; ``uploads`` (whether it
    has local files), when the caller knows, spares parsing the request again."""
    if uploads is None:
        uploads = bool(RenderRequest.model_validate(job.request).local_paths())
    return steps_from(job.state, uploads=uploads, downloaded=job.downloaded)


def describe(job: Job) -> str:
    """What Flower shows for a step: job id, model and a prompt excerpt, never a secret."""
    prompt = str(job.request.get("prompt", ""))
    excerpt = prompt if len(prompt) <= 40 else prompt[:39] + "…"
    return f"job={job.id} model={job.request.get('model')} prompt={excerpt!r}"


def chain_for(
    job: Job, *, attempt: int = 0, countdown: float | None = None, uploads: bool | None = None
) -> Signature | None:
    """A chain of immutable step signatures for the job at its current ``seq``, or None.

    ``attempt`` and ``countdown`` apply to the first step: a step that already claimed
    the job in this process continues it, as its own retry would. A chain that starts
    with a poll waits for the job's recorded due time. ``uploads`` as for
    :func:`steps_for`.
    """
    shown = describe(job)
    signatures: list[Signature] = []
    for step in steps_for(job, uploads=uploads):
        kwargs: dict[str, Any] = {"job_id": job.id, "seq": job.seq}
        if attempt and not signatures:
            kwargs["attempt"] = attempt
        if step == "poll":
            kwargs["n"] = job.poll_count  # the poll claim counts from the job's polls so far
        sig = app.signature(f"relaydance.{step}", kwargs=kwargs, immutable=True)
        # The job record is the result: no producer waits on a result backend channel.
        sig = sig.set(argsrepr="()", kwargsrepr=shown, ignore_result=True)
        if not signatures:
            wait = countdown
            if step == "poll" and job.next_due is not None and not countdown:
                wait = job.next_due - time.time()  # the schedule its submission recorded
            if wait and wait > 0:
                sig = sig.set(countdown=wait)
        signatures.append(sig)
    if not signatures:
        return None
    return signatures[0] if len(signatures) == 1 else chain(*signatures)


def send_chain(
    job: Job | None,
    *,
    attempt: int = 0,
    countdown: float | None = None,
    producer: Producer | None = None,
) -> bool:
    """Send the job's chain from its current state; False when there is none to send."""
    if job is None or job.is_final:
        return False
    signature = chain_for(job, attempt=attempt, countdown=countdown)
    if signature is None:
        return False
    signature.apply_async(producer=producer)
    return True
