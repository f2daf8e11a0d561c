"""The signature of a job's next step, for a producer that sends it itself.

What the step is, and when it leaves, is decided in one place,
:func:`worker.job.advance.next_message` (the state machine's plan, timed from the
record); :func:`worker.job.advance.advance` sends it. A job moves one step, one message,
at a time: each step's task sends the next when it is done.
"""

from __future__ import annotations

from celery.canvas import Signature
from kombu.messaging import Producer

from worker import app
from worker.job.advance import advance, describe, next_message, plan_for
from worker.job.engine import get_engine
from worker.job.record import Job

__all__ = ["chain_for", "describe", "send_chain", "steps_for"]


def steps_for(job: Job, *, uploads: bool | None = None) -> list[str]:
    """The steps still to run for a job, from its current state; ``uploads`` (whether it
    has local files), when the caller knows, spares parsing the request again."""
    return plan_for(job, uploads=uploads)


def chain_for(
    job: Job, *, attempt: int = 0, countdown: float | None = None, uploads: bool | None = None
) -> Signature | None:
    """The signature of the job's next step at its current ``seq``, or None; ``uploads``
    as for :func:`steps_for`."""
    message = next_message(job, attempt=attempt, countdown=countdown, uploads=uploads)
    if message is None:
        return None
    signature = app.signature(message.task, args=message.args, immutable=True)
    # The job record is the result: no producer waits on a result backend channel.
    options = {"argsrepr": "()", "kwargsrepr": message.shown, "ignore_result": True}
    if message.countdown:
        options["countdown"] = message.countdown
    return signature.set(**options)


def send_chain(
    job: Job | None,
    *,
    attempt: int = 0,
    countdown: float | None = None,
    producer: Producer | None = None,
) -> bool:
    """Send the job's next step; False when there is none to send."""
    sent = advance(get_engine(), job, attempt=attempt, countdown=countdown, producer=producer)
    return sent is not None
