"""The slot reconciler: concurrency slots follow job records, never timers.

The provider counts a task against the key from its creation until it is final, whatever
happens to the worker that submitted it. So a slot is never taken back by a lease running
out; instead the sweeper runs :func:`reconcile`, which compares each key's holders with
their jobs:

- a holder whose job no longer needs a slot gives it back, and the key's line moves: the
  job is final, gone, past generation, or its task can no longer be alive;
- a job whose task is live but holds no slot takes one back, over the limit if need be;
  the key's slots were miscounted (a Redis failover can bring them back so), so for a
  while its 429s teach its learned limit nothing.

A job needs its slot while it is about to submit (granted, queued), submitting, submitted
or running; in ``submit_unknown`` for ``RELAYDANCE_SUBMIT_UNKNOWN_HOLD_SECONDS`` after the
ambiguous reply (its task, if it exists, is generating); and, when canceled with a task
that exists or may, until the provider says the task is final (the reconciler asks) or
the same hold has passed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from worker.errors import Deferred, NotFound, RelayDanceError
from worker.job import calls
from worker.job.engine import Engine
from worker.job.failover import LEARNING_QUIET_SECONDS
from worker.job.record import Billing, Job, JobState
from worker.job.states import HOLDS_SLOT, IN_LINE, REMOTE_MAY_BE_LIVE

__all__ = ["Reconciled", "needs_slot", "reconcile"]

logger = logging.getLogger(__name__)

S = JobState


@dataclass
class Reconciled:
    """What one reconciliation did, per key alias."""

    freed: list[str] = field(default_factory=list)
    taken: list[str] = field(default_factory=list)
    granted: list[str] = field(default_factory=list)


def needs_slot(engine: Engine, job: Job | None, *, now: float) -> bool:
    """Whether ``job`` must keep a concurrency slot now (see the module docstring)."""
    if job is None:
        return False
    hold = engine.settings.submit_unknown_hold_seconds
    if job.state in HOLDS_SLOT:
        return True
    if job.state is S.SUBMIT_UNKNOWN:
        return now < (job.unknown_since or job.updated_at) + hold
    if job.state is not S.CANCELED:
        return False
    canceled_at = job.times.get("canceled", job.updated_at)
    if job.billing in (Billing.PENDING, Billing.UNKNOWN):
        return now < max(job.unknown_since or 0.0, canceled_at) + hold
    if job.billing is Billing.BILLED and job.remote_task_id:
        submitted = job.times.get("submitted", canceled_at)
        if now > submitted + engine.settings.poll_deadline_seconds:
            return False
        return not _task_is_final(engine, job)
    return False


def _task_is_final(engine: Engine, job: Job) -> bool:
    """Ask the provider whether a canceled job's task is final; unknown counts as not."""
    if job.remote_final:
        return True
    try:
        task = calls.call(engine, job, calls.read_task(job.remote_task_id or ""))
    except NotFound:
        return True
    except Deferred:
        return False  # the key is busy or paused, or its provider down: ask at the next sweep
    except (RelayDanceError, ValueError) as exc:
        logger.info("job %s: could not ask whether its task is final: %s", job.id, exc)
        return False
    if task.is_final:
        engine.store.update_fields(job.id, states={S.CANCELED}, set={"remote_final": "1"})
    return task.is_final


def reconcile(engine: Engine, aliases: list[str], *, regrant: bool = False) -> Reconciled:
    """Take back the slots live jobs lost, free those jobs no longer need; fill the lines.

    Live tasks come first: the provider counts them, so a slot freed in the same pass
    goes to one of them before the line. ``regrant`` (after a failover, whose lost
    messages may have been the ones to start them): jobs holding a slot but not yet
    submitting count as granted again, for the sweeper to start.
    """
    report = Reconciled()
    now = time.time()
    holders = {alias: engine.limits.holders(alias) for alias in aliases}
    held = {(alias, h) for alias, found in holders.items() for h in found}
    report.taken = _take_back(engine, set(aliases), held, now=now)
    for alias in aliases:
        found = holders[alias]
        for job_id, job in zip(found, engine.store.get_many(found), strict=True):
            if not needs_slot(engine, job, now=now):
                report.granted += engine.limits.release(alias, job_id)
                report.freed.append(job_id)
                logger.info("key %s: slot of job %s freed (job is %s)", alias, job_id,
                            job.state.value if job else "gone")  # fmt: skip
            elif regrant and job is not None and job.state in IN_LINE:
                report.granted.append(job_id)
        report.granted += engine.limits.grant_waiters(alias)
    return report


def _take_back(
    engine: Engine, aliases: set[str], held: set[tuple[str, str]], *, now: float
) -> list[str]:
    """Jobs whose remote task is live but hold no slot: take one for each."""
    taken: list[str] = []
    for state in [s for s in JobState if s in REMOTE_MAY_BE_LIVE]:  # in order of progress
        ids = engine.store.in_state(state)
        # Most live jobs hold their slot: load only the others.
        lost = [
            job_id
            for job_id, alias in zip(ids, engine.store.field_of(ids, "alias"), strict=True)
            if alias in aliases and (alias, job_id) not in held
        ]
        for job_id, job in zip(lost, engine.store.get_many(lost), strict=True):
            if job is None or not needs_slot(engine, job, now=now):
                continue
            if engine.limits.take(job.alias, job_id):
                taken.append(job_id)
                engine.limits.adaptive.quiet(job.alias, LEARNING_QUIET_SECONDS)
                logger.warning("key %s: job %s (%s) held no slot; taken back", job.alias,
                               job_id, job.state.value)  # fmt: skip
    return taken
