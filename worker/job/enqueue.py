"""The one enqueue protocol, for a single job and for a batch's chunk alike.

1. **Pending**: the new records are written with ``enqueue_pending``, in one round trip.
   No step acts on a pending job (:func:`worker.job.step.load` waits for it briefly).
2. **Message**: the caller's ``send`` publishes what starts them (a job's first step, or one
   ``relaydance.resume_many`` for a chunk). When it raises, the message may not exist:
   the jobs are canceled unsent and :class:`~worker.errors.EnqueueFailed` is raised.
3. **Confirm**: the flag is cleared on every job in one round trip; from then on the
   steps act on them. Should this process stop before confirming, the sweeper cancels a
   job still pending after :data:`~worker.job.step.ENQUEUE_GRACE`, unsent: never run, so
   a producer may enqueue again without paying twice.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from worker.errors import EnqueueFailed
from worker.job.engine import Engine
from worker.job.record import Job
from worker.job.states import JobState

__all__ = ["NewJob", "confirm_all", "enqueue_jobs", "let_go", "new_job", "write_pending"]

_CONFIRM_TRIES = 3


@dataclass(frozen=True)
class NewJob:
    """A job's id and the hash written for it: what was built, so nothing is read back."""

    id: str
    fields: Mapping[str, str]

    def job(self) -> Job:
        """The record as written (for the first message), without a Redis read."""
        return Job.from_hash(self.id, {str(k): str(v) for k, v in self.fields.items()})


def new_job(
    engine: Engine,
    job_id: str,
    *,
    request: Mapping[str, Any],
    alias: str,
    cost: float,
    on_done: str | None = None,
    extra: Mapping[str, str] | None = None,
    now: float | None = None,
) -> NewJob:
    """A pending ``queued`` job's hash, due once the step grace has passed."""
    now = time.time() if now is None else now
    fields = engine.store.new_fields(
        request=request, alias=alias, cost=cost, now=now,
        due=now + engine.settings.step_grace_seconds, on_done=on_done, extra=extra,
    )  # fmt: skip
    fields["enqueue_pending"] = "1"
    return NewJob(job_id, fields)


def enqueue_jobs(
    engine: Engine,
    jobs: Sequence[NewJob],
    send: Callable[[], None],
    *,
    pipe: redis.client.Pipeline | None = None,
    canceled_ok: bool = False,
) -> None:
    """Write ``jobs`` pending, call ``send``, then confirm them; all or nothing.

    ``pipe``: the caller's pipeline, for writes of its own in the same round trip.
    ``canceled_ok``: a job canceled while it was enqueued (its batch was) is no failure.

    Raises :class:`~worker.errors.EnqueueFailed` when the message may not have left (the
    jobs are canceled) or the confirmation did not land (the sweeper cancels them).
    """
    write_pending(engine, jobs, pipe=pipe)
    let_go(engine, jobs, send, canceled_ok=canceled_ok)


def write_pending(
    engine: Engine, jobs: Sequence[NewJob], *, pipe: redis.client.Pipeline | None = None
) -> None:
    """Write the pending records in one round trip: in ``pipe`` (a batch's chunk: a
    plain pipeline, each job's record whole), else in one MULTI."""
    pipe = engine.redis.pipeline(transaction=True) if pipe is None else pipe
    for new in jobs:
        engine.store.queue_create(pipe, new.id, new.fields, due=float(new.fields["next_due"]))
    pipe.execute()


def let_go(
    engine: Engine, jobs: Sequence[NewJob], send: Callable[[], None], *, canceled_ok: bool = False
) -> None:
    """Send the message that starts the written pending ``jobs``, then confirm them."""
    if not jobs:
        return
    try:
        send()
    except Exception as exc:  # kombu and redis errors alike: the message may not exist
        for new in jobs:
            with contextlib.suppress(Exception):
                engine.store.abandon(new.id, reason=f"enqueue failed: {type(exc).__name__}")
        raise EnqueueFailed(
            f"{_which(jobs)} not enqueued ({type(exc).__name__}); {_never(jobs)}"
        ) from exc
    confirm_all(engine, [new.id for new in jobs], canceled_ok=canceled_ok)


def _which(jobs: Sequence[NewJob]) -> str:
    return f"job {jobs[0].id} was" if len(jobs) == 1 else f"{len(jobs)} jobs were"


def _never(jobs: Sequence[object]) -> str:
    return "it will never run" if len(jobs) == 1 else "they will never run"


def confirm_all(engine: Engine, job_ids: Sequence[str], *, canceled_ok: bool = False) -> None:
    """Let pending jobs run, in one round trip; on a Redis error, try again.

    A compare-and-set that finds the job ``queued`` but not pending was confirmed by an
    earlier try whose reply was lost. A job found canceled (or gone) raises, unless
    ``canceled_ok`` (a batch's job canceled meanwhile with its batch stays canceled).
    """
    for attempt in range(_CONFIRM_TRIES):
        try:
            found = _confirm(engine, job_ids)
        except redis.RedisError:
            time.sleep(0.2 * (attempt + 1))
            continue
        if canceled_ok or all(state not in ("", JobState.CANCELED.value) for state in found):
            return
        break
    which = f"job {job_ids[0]}" if len(job_ids) == 1 else f"{len(job_ids)} jobs"
    raise EnqueueFailed(
        f"{which} could not be confirmed; {_never(job_ids)} (the sweeper cancels "
        f"{'it' if len(job_ids) == 1 else 'them'})"
    )


def _confirm(engine: Engine, job_ids: Sequence[str]) -> list[str]:
    """The store's confirm, due after the step grace; each job's state as found."""
    return engine.store.confirm_pending(
        job_ids, due=time.time() + engine.settings.step_grace_seconds
    )
