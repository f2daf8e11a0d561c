"""The sweeper: move every job whose next step is overdue, whatever happened to its message.

Celery messages are nudges: a worker killed mid-step takes its message with it until the
broker's visibility timeout (an hour or more). The sweeper, run by beat every ~20 s,
finds non-final jobs whose next step is overdue, bumps their ``seq`` (so any old message
still somewhere becomes stale) and asks for the job to be resumed from its current state.
It also hands free slots to jobs waiting in line, retries ``on_done`` notices the broker
did not take (:func:`worker.notify.deliver_due`), and leaves the time of its last run in
Redis, which ``relaydance doctor`` reads to tell that beat is alive.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from worker.engine import Engine
from worker.jobs import JobState
from worker.notify import deliver_due
from worker.steps import WAITING_RECHECK

__all__ = ["LAST_SWEEP_KEY", "SweepReport", "sweep"]

logger = logging.getLogger(__name__)

RESUME_GRACE = 120.0
LAST_SWEEP_KEY = "rd:sweep:last"


@dataclass(frozen=True)
class SweepReport:
    """What one sweep did."""

    resumed: list[str]
    granted: list[str]
    checked: int


def sweep(engine: Engine, *, grace: float | None = None, limit: int = 2000) -> SweepReport:
    """Resume overdue jobs and fill free slots from each key's waiting line."""
    if grace is None:
        grace = engine.settings.sweep_grace_seconds
    now = time.time()
    engine.redis.set(LAST_SWEEP_KEY, repr(now))
    resumed: list[str] = []
    granted: list[str] = []
    due = engine.store.due(before=now - grace, limit=limit)
    for job_id, _ in due:
        job = engine.store.get(job_id)
        if job is None:
            engine.redis.zrem(engine.store.active_key, job_id)
            continue
        if job.is_final:
            continue
        if job.state is JobState.WAITING_FOR_SLOT and not engine.limits.holds(job.alias, job_id):
            if engine.limits.position(job.alias, job_id) is not None:
                # Still in line: nothing is lost, look again later.
                engine.store.change(
                    job_id, states={JobState.WAITING_FOR_SLOT}, due=now + WAITING_RECHECK
                )
                continue
        # A resumed poll runs at once; other steps get time to run before the next sweep.
        polling = job.state in (JobState.SUBMITTED, JobState.RUNNING)
        applied, _ = engine.store.change(
            job_id,
            states=None,
            where={"seq": job.seq},
            incr={"seq": 1},
            due=now if polling else now + RESUME_GRACE,
        )
        if applied:
            engine.send("relaydance.resume", job_id)
            resumed.append(job_id)
            logger.info("job %s key=%s state=%s overdue; resumed", job_id, job.alias, job.state)
    for alias in engine.settings.keys():
        limit_ = engine.settings.concurrency_for(alias)
        for job_id in engine.limits.grant_waiters(alias, limit=limit_):
            engine.send("relaydance.resume", job_id)
            granted.append(job_id)
    deliver_due(engine)
    return SweepReport(resumed=resumed, granted=granted, checked=len(due))
