"""What a Redis failover may do to the fleet's state, and how the steps stay safe through it.

Replication is asynchronous, so a promoted replica may lack the primary's last writes: a
job record can come back older than what the fleet did with it. Three guards:

- **Durable writes, confirmed later.** A task id recorded (or adopted) that no replica
  confirmed in time stays recorded on the primary; :func:`confirm_later` sends
  ``relaydance.confirm_task``, which makes it durable, or records it again where a
  failover lost it, with back-off for as long as it takes. The job is never submitted
  again for want of it.
- **A record that went back in time is in doubt.** Evidence that the record is older than
  the fleet's own knowledge (a step message whose ``seq`` is above the record's, a submit
  retry whose earlier claim the record lacks, the reply or webhook of a submission whose
  claim is above the record's last one) moves a job that has no task recorded to
  ``submit_unknown`` with that evidence (:func:`mark_in_doubt`): never a new POST. A
  webhook of the lost submission, proven by its claim, is then adopted as usual.
- **The primary changed.** :func:`notice_new_primary` compares the primary's replication
  id with the one the fleet last saw; after a failover (or a restart) the per-key slots may
  have come back with holders missing or extra until the next sweep has reconciled them
  from the job records, so for :data:`LEARNING_QUIET_SECONDS` the 429s a key meets teach
  its learned limit nothing. That sweep also moves every due job at once and asks about
  every live task now: a webhook the old primary took in may be lost with it.
"""

from __future__ import annotations

import json
import logging
import time

import redis

from config.task_names import CONFIRM_TASK
from worker.job.engine import Engine
from worker.job.record import Billing, Job, JobState
from worker.job.transitions import BACK_IN_TIME

__all__ = [
    "CONFIRM_TASK",
    "FAILOVER_POLL_FIELD",
    "LEARNING_QUIET_SECONDS",
    "PRIMARY_KEY",
    "confirm_later",
    "lost_claim",
    "mark_in_doubt",
    "notice_new_primary",
]

logger = logging.getLogger(__name__)

S = JobState
# Set on a live job the sweep polled at once after a new primary: the webhook it may then
# seem to have missed was received, by the old primary.
FAILOVER_POLL_FIELD = "failover_poll_at"
PRIMARY_KEY = "rd:redis:primary"  # the replication id of the primary the fleet last saw
# After a new primary, or a slot the reconciler had to take back, 429s teach nothing this
# long: past the longest generation, so a task the lost state hid has finished.
LEARNING_QUIET_SECONDS = 300.0


def confirm_later(engine: Engine, job_id: str, *, task_id: str, claim: int, tries: int = 0) -> None:
    """Make the job's recorded ``task_id`` durable later (see the module docstring)."""
    delay = min(2.0**tries, 30.0)
    logger.warning(
        "job %s: task %s is recorded, but no Redis replica confirmed it yet; confirming "
        "again in %.0fs", job_id, task_id, delay,
    )  # fmt: skip
    engine.send(CONFIRM_TASK, job_id, task_id, claim, tries, countdown=delay)


def lost_claim(job: Job, claim: int) -> bool:
    """Whether the record lost submission ``claim``: its claim is above the record's last,
    no task is recorded, and it is none of the submissions the record keeps as orphans."""
    if job.remote_task_id or job.state not in BACK_IN_TIME.sources:
        return False
    return claim > job.submit_claim and str(claim) not in job.orphan_claims


def mark_in_doubt(engine: Engine, job: Job, *, evidence: str, claim: int | None = None) -> bool:
    """Move a job whose record went back in time to ``submit_unknown``, with the evidence.

    ``claim`` names a submission the record lost (from its reply or webhook): it is kept
    with the orphaned submissions, so that its task's webhook is recognised. A job with a
    task recorded, or past submission, is left alone: it has what a submission made.
    """
    if job.remote_task_id or job.state not in BACK_IN_TIME.sources:
        logger.warning("job %s: its record went back in time (%s); left %s", job.id, evidence,
                       job.state.value)  # fmt: skip
        return False
    if job.state is S.SUBMIT_UNKNOWN and claim is None:
        return False  # in doubt already, and no submission named to keep
    now, settings = time.time(), engine.settings
    fields: dict[str, object] = {}
    if claim is not None:
        # The lost POST left after the last write the record kept.
        claims = {**job.orphan_claims, str(claim): job.updated_at or now}
        fields["orphan_claims"] = json.dumps(claims)
    if job.state is not S.SUBMIT_UNKNOWN:
        fields |= {"billing": Billing.UNKNOWN.value, "unknown_since": now,
                   "error_code": "submit_unknown",
                   "error_message": f"the record went back in time: {evidence}"[:2000]}  # fmt: skip
    applied, _ = engine.store.apply(
        job.id,
        BACK_IN_TIME,
        only={job.state},
        where={"seq": job.seq, "remote_task_id": ""},
        set=fields,
        due=None if job.state is S.SUBMIT_UNKNOWN else now + settings.submit_unknown_hold_seconds,
    )
    if applied and job.state is not S.SUBMIT_UNKNOWN:
        engine.limits.take(job.alias, job.id)  # its task, if it exists, counts at the provider
        logger.warning(
            "job %s key=%s state=submit_unknown: its record went back in time (%s); it is "
            "never submitted again blindly", job.id, job.alias, evidence,
        )  # fmt: skip
    return applied


def notice_new_primary(engine: Engine, *, record: bool = True) -> bool:
    """Whether the Redis primary is not the one the fleet last saw (a failover, or a
    restart); if so, the learned limits of every key are quiet for a while.

    ``record``: this process takes the notice (the sweep, which then recovers); without it
    (a 429 meeting a new primary before the sweep does) it only quiets the limits.
    """
    try:
        replid = str(engine.redis.info("replication").get("master_replid", ""))
    except redis.ResponseError:
        return False  # INFO refused (some managed services): nothing to compare
    if not replid:
        return False
    if record:
        seen = engine.redis.set(PRIMARY_KEY, replid, get=True)
    else:
        seen = engine.redis.get(PRIMARY_KEY)
    if seen is None or seen == replid:
        return False
    aliases = sorted(set(engine.settings.keys()) | set(engine.limits.aliases_seen()))
    for alias in aliases:
        engine.limits.adaptive.quiet(alias, LEARNING_QUIET_SECONDS)
    if not record:
        return True
    logger.warning(
        "Redis has a new primary (a failover or a restart): writes of the old one's last "
        "moments may be lost; slots are reconciled from the job records at the next sweep, "
        "and 429s teach no key's limit for %.0fs", LEARNING_QUIET_SECONDS,
    )  # fmt: skip
    return True
