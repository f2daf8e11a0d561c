"""The operator's decision for a ``submit_unknown`` job: submit it again, knowingly."""

from __future__ import annotations

import json
import logging
import time

from worker.errors import NotDurable
from worker.job.advance import advance
from worker.job.engine import Engine
from worker.job.record import Job, JobState
from worker.job.step import log_transition
from worker.job.transitions import RESUBMIT

__all__ = ["SubmitRefused", "resubmit"]

logger = logging.getLogger(__name__)

S = JobState


class SubmitRefused(ValueError):
    """An operator's resubmit that does not apply to the job; the message says why."""


def resubmit(engine: Engine, job_id: str) -> Job:
    """The operator's decision for a ``submit_unknown`` job: submit again, knowingly.

    The earlier attempt's task, if it exists, may be billed as well: it is counted in
    ``orphans`` (possibly billed) and its webhook, should it come, is recorded as a
    duplicate spend. Raises :class:`SubmitRefused` when the job is in another state.
    """
    job = engine.store.get(job_id)
    if job is None:
        raise SubmitRefused(f"no job {job_id!r} (unknown, or expired)")
    if job.state is not S.SUBMIT_UNKNOWN:
        raise SubmitRefused(
            f"job {job_id} is {job.state.value}; only a job in submit_unknown is resubmitted"
        )
    # The submission in doubt stays an orphan: its task's webhook is still recognised.
    claims = {**job.orphan_claims, str(job.submit_claim): job.submit_intent_at or job.updated_at}
    durable = True
    try:
        applied, _ = engine.store.apply(
            job_id,
            RESUBMIT,
            set={"orphan_claims": json.dumps(claims)},
            due=time.time() + engine.settings.step_grace_seconds,
            durable=True,
        )
    except NotDurable as exc:
        # Resubmitted on the primary; it is not started now: the sweeper starts it when
        # due, and its own claim waits for a replica like every claim.
        applied, durable = True, False
        logger.warning("job %s: resubmitted, not started yet: %s", job_id, exc)
    if not applied:
        raise SubmitRefused(f"job {job_id} changed meanwhile; look at it again")
    log_transition(job, "waiting_for_slot", reason="resubmitted by the operator")
    fresh = engine.store.get(job_id)
    assert fresh is not None
    if durable:
        advance(engine, fresh)
    return fresh
