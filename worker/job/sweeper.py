"""The sweeper: move every job whose next step is overdue, whatever happened to its message.

Celery messages are nudges: a worker killed mid-step takes its message with it until the
broker's visibility timeout (an hour or more). The sweeper, run every ~20 s by one of the
workers in turn (:mod:`worker.job.sweep_loop`), finds non-final jobs whose next step is
overdue and moves them on:

- most are resumed: their ``seq`` is bumped (any old message still somewhere becomes
  stale) and their next step is sent again (:func:`worker.job.advance.advance`);
- a job overdue in ``submitting`` lost its worker during the POST, or its reply: unless
  that attempt provably never left, it becomes ``submit_unknown`` (never POSTed again,
  unless ``RELAYDANCE_PROVIDER_IDEMPOTENT`` says it is safe);
- a ``submit_unknown`` job whose slot hold has passed gives its slot back and waits for
  the operator, off the schedule;
- a job its producer never confirmed (the enqueue failed) is canceled, never run;
- a storyboard's clip waiting for its stills is not resumed: its stills are asked again
  (:func:`worker.job.inputs.settle_waiting`), in case the notice of their end was lost.

Then the slot reconciler (:mod:`worker.job.slots`) frees slots jobs no longer need, takes
back slots live jobs lost, and hands free slots to the jobs waiting in line: after a Redis
failover (noticed first, :func:`worker.job.failover.notice_new_primary`) this one sweep
puts the slots right from the job records. A paused line
(a key held by its account, a provider whose breaker is open, a held model) gets its probe:
the job at its head is nudged when the probe is due, and an ongoing pause is told again
every hour (:mod:`worker.job.alerts`). It also retries ``on_done`` notices the broker did
not take (:func:`worker.job.notify.deliver_due`). Whoever runs it records the time of each
completed sweep under :data:`LAST_SWEEP_KEY`, which ``relaydance doctor`` and ``/metrics``
read (:mod:`worker.job.sweep_health`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from worker.job.advance import advance_ids
from worker.job.alerts import Alert, raise_alert
from worker.job.engine import Engine
from worker.job.failover import FAILOVER_POLL_FIELD, notice_new_primary
from worker.job.inputs import settle_waiting
from worker.job.notify import deliver_due, notify_final
from worker.job.record import Billing, Job, JobKind, JobState
from worker.job.slots import reconcile
from worker.job.states import AT_PROVIDER, LIVE_STATES
from worker.job.step import ENQUEUE_GRACE, resume_granted
from worker.job.submit_refusals import count_possible_orphan, mark_unknown

__all__ = ["LAST_SWEEP_KEY", "SweepReport", "sweep"]

logger = logging.getLogger(__name__)

S = JobState
LAST_SWEEP_KEY = "rd:sweep:last"  # when the last completed sweep began (epoch seconds)


@dataclass(frozen=True)
class SweepReport:
    """What one sweep did."""

    resumed: list[str]
    granted: list[str]
    checked: int
    unknown: list[str] = field(default_factory=list)
    freed: list[str] = field(default_factory=list)
    taken: list[str] = field(default_factory=list)
    probed: list[str] = field(default_factory=list)


def sweep(engine: Engine, *, grace: float | None = None, limit: int = 2000) -> SweepReport:
    """Move overdue jobs on, reconcile slots, and fill free slots from each key's line."""
    if grace is None:
        grace = engine.settings.sweep_grace_seconds
    # A new primary (a failover) may have lost the messages that were to move jobs, and what
    # polls and webhooks had learned: every job due is moved now, every live task is asked
    # about now, and every job granted a slot is started again.
    new_primary = notice_new_primary(engine)
    now = time.time()
    if new_primary:
        grace = 0.0
        _poll_live_now(engine, now=now)
    resumed: list[str] = []
    unknown: list[str] = []
    due = engine.store.due(before=now - grace, limit=limit)
    for job_id, _ in due:
        job = engine.store.get(job_id)
        if job is None:
            engine.store.forget_due(job_id)
            continue
        if job.is_final:
            continue
        action = _overdue(engine, job, now=now)
        if action == "resume" and _resume(engine, job, now=now):
            resumed.append(job_id)
        elif action == "unknown":
            unknown.append(job_id)
    aliases = sorted(set(engine.settings.keys()) | set(engine.limits.aliases_seen()))
    reconciled = reconcile(engine, aliases, regrant=new_primary)
    resume_granted(engine, reconciled.granted)
    probed = _nudge_probes(engine, aliases)
    _remind(engine, aliases)
    deliver_due(engine)
    return SweepReport(
        resumed=resumed,
        granted=reconciled.granted,
        checked=len(due),
        unknown=unknown,
        freed=reconciled.freed,
        taken=reconciled.taken,
        probed=probed,
    )


def _poll_live_now(engine: Engine, *, now: float) -> None:
    """Make every job whose task is live due now (its webhook's effect may be lost)."""
    for state in (S.SUBMITTED, S.RUNNING):  # AT_PROVIDER, in order of progress
        for job_id in engine.store.in_state(state):
            # Marked: a job that then ends by this poll did not miss its webhook.
            engine.store.update_fields(
                job_id, states=AT_PROVIDER, due=now, set={FAILOVER_POLL_FIELD: now}
            )


def _nudge_probes(engine: Engine, aliases: list[str]) -> list[str]:
    """Nudge the job that probes each paused line whose probe is due."""
    nudged = []
    for alias in aliases:
        for job_id in engine.limits.probes_due(alias):
            advance_ids(engine, [job_id])
            nudged.append(job_id)
            logger.info("key %s: probe due; job %s nudged to try the paused line", alias, job_id)
    return nudged


def _remind(engine: Engine, aliases: list[str]) -> None:
    """Tell every ongoing pause again, at most hourly (the alert's own key keeps time)."""
    for alias in aliases:
        for hold in engine.limits.paused(alias):
            if hold.kind == "operator":
                continue  # paused on purpose: nobody needs telling
            scope = f"{alias}/{hold.model}" if hold.model else alias
            raise_alert(engine, Alert(
                kind="model_paused" if hold.model else "key_paused", alias=scope,
                provider=engine.settings.provider_for(alias), reason=hold.reason,
                since=hold.since, state="ongoing",
                fix=f"see `relaydance keys`; `relaydance keys resume {alias}` once fixed",
            ))  # fmt: skip
    for route in {engine.limits.route(alias) for alias in aliases}:
        state = engine.limits.breakers.state(route)
        if state is not None:
            raise_alert(engine, Alert(
                kind="provider_down", alias="", provider=route, reason=state.reason,
                since=state.since, state="ongoing",
                fix="none needed if the provider is down; if it lasts, check its base URL "
                    "and the network",
            ))  # fmt: skip


def _overdue(engine: Engine, job: Job, *, now: float) -> str:
    """What to do with an overdue job: ``resume``, ``unknown``, or ``""`` (handled here)."""
    settings = engine.settings
    if job.state in (S.QUEUED, S.WAITING_FOR_INPUT) and job.enqueue_pending:
        if now - job.created_at > ENQUEUE_GRACE:
            engine.store.abandon(job.id, reason="the producer never confirmed the job")
            logger.warning("job %s: its enqueue was never confirmed; canceled unsent", job.id)
        return ""
    if job.state is S.WAITING_FOR_INPUT:
        _waiting(engine, job, now=now)
        return ""
    if job.state is S.WAITING_FOR_SLOT and not engine.limits.holds(job.alias, job.id):
        if engine.limits.position(job.alias, job.id) is not None:
            # Still in line: nothing is lost, look again later.
            engine.store.update_fields(
                job.id, states={S.WAITING_FOR_SLOT}, due=now + engine.settings.step_grace_seconds
            )
            return ""
    if job.state is S.SUBMITTING:
        if job.billing is Billing.NONE:
            return "resume"  # the last attempt provably never left
        sent_at = job.submit_intent_at or now
        if (
            settings.idempotent_for(job.alias)
            and job.batch is None
            and job.kind is not JobKind.IMAGE  # nothing to adopt: a second POST pays again
            and count_possible_orphan(engine, job, claim=job.submit_claim, sent_at=sent_at)
        ):
            return "resume"  # declared safe for this key; the attempt counts as an orphan
        evidence = "no reply was recorded: the worker stopped during the POST"
        return "unknown" if mark_unknown(engine, job.id, claim=None, evidence=evidence) else ""
    if job.state is S.SUBMIT_UNKNOWN:
        # The hold has passed: any task of that submission is final by now. The slot
        # goes back (the reconciler frees it); the job waits for the operator.
        applied, _ = engine.store.update_fields(job.id, states={S.SUBMIT_UNKNOWN}, drop_due=True)
        if applied:
            logger.warning(
                "job %s key=%s state=submit_unknown: slot freed after the hold; waiting for "
                "the operator (relaydance resubmit or relaydance cancel)",
                job.id,
                job.alias,
            )
        return ""
    return "resume"


def _waiting(engine: Engine, job: Job, *, now: float) -> None:
    """A clip waiting for its stills is never overdue: its stills are asked again (a
    notice lost with a stopped worker), and it waits on, or moves, or ends."""
    outcome = settle_waiting(engine, job.id)
    if outcome == "canceled":
        notify_final(engine, job.id)
    elif outcome == "waiting":
        engine.store.update_fields(
            job.id, states={S.WAITING_FOR_INPUT}, due=now + engine.settings.step_grace_seconds
        )


def _resume(engine: Engine, job: Job, *, now: float) -> bool:
    # A resumed poll runs at once; other steps get time to run before the next sweep.
    polling = job.state in AT_PROVIDER
    applied, _ = engine.store.update_fields(
        job.id,
        states=LIVE_STATES,
        where={"seq": job.seq},
        incr={"seq": 1},
        due=now if polling else now + engine.settings.step_grace_seconds,
    )
    if applied:
        advance_ids(engine, [job.id])  # from the record as the bump left it
        logger.info("job %s key=%s state=%s overdue; resumed", job.id, job.alias, job.state)
    return applied
