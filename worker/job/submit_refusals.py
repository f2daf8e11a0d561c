"""What a submission does when its POST is refused, or its outcome is unknown.

A refusal that created nothing (a 429, the account, a claim no replica confirmed) sends
the job back to the head of its line, unbilled (:data:`~worker.job.transitions.REQUEUE`).
An answer that leaves the task in doubt moves the job to ``submit_unknown``
(:data:`~worker.job.transitions.SUBMIT_AMBIGUOUS`), unless the key is declared idempotent,
when the POST is retried with the same ``Idempotency-Key`` and the first counts as a
possible orphan. See :mod:`worker.job.submit`.
"""

from __future__ import annotations

import json
import logging
import time

from config.task_names import GRANT
from worker.errors import AccountFault, NotDurable, RateLimited, RelayDanceError, TransientError
from worker.job.engine import Engine
from worker.job.failover import notice_new_primary
from worker.job.record import Billing, Job, JobKind, JobState
from worker.job.states import COUNTED_AT_PROVIDER
from worker.job.step import Outcome, log_transition, resume_granted, stop, transient
from worker.job.transitions import REQUEUE, SUBMIT_AMBIGUOUS

__all__ = [
    "NOT_DURABLE_RETRY",
    "ambiguous",
    "back_in_line",
    "count_possible_orphan",
    "mark_unknown",
    "not_durable",
    "refused_by_account",
]

logger = logging.getLogger(__name__)

S = JobState
NOT_DURABLE_RETRY = 5.0  # a claim no replica confirmed is tried again after this long


def ambiguous(
    engine: Engine, job: Job, claim: int, exc: RelayDanceError, attempt: int, *, sent_at: float
) -> Outcome:
    """The POST may have created a task: never POST again blindly."""
    settings = engine.settings
    if (
        settings.idempotent_for(job.alias)
        and isinstance(exc, TransientError)
        and attempt < settings.max_transient_retries
        and job.batch is None  # a budget has no room reserved for a second task
        and job.kind is not JobKind.IMAGE  # no task id: a second POST's images are new ones
        and count_possible_orphan(engine, job, claim=claim, sent_at=sent_at)
    ):
        # Declared safe for this key: the provider answers a repeated key with the task it
        # made. Should it not, the earlier POST is counted as possibly billed.
        return transient(engine, job, exc, attempt)
    mark_unknown(engine, job.id, claim=claim, evidence=f"{exc.code}: {exc}")
    return stop("submission outcome unknown")


def count_possible_orphan(engine: Engine, job: Job, *, claim: int, sent_at: float) -> bool:
    """Before a declared-idempotent retry: the POST in doubt may have made a billed task of
    its own (if the provider did not honour the key), so it counts in ``orphans``, and its
    claim is kept, for its task's webhook to be recognised."""
    claims = {**job.orphan_claims, str(claim): sent_at}
    applied, _ = engine.store.update_fields(
        job.id,
        states={S.SUBMITTING},
        where={"submit_claim": claim, "billing": Billing.PENDING.value},
        set={"billing": Billing.NONE.value, "orphan_claims": json.dumps(claims)},
        incr={"orphans": 1},
    )
    return applied


def mark_unknown(engine: Engine, job_id: str, *, claim: int | None, evidence: str) -> bool:
    """Move a ``submitting`` job to ``submit_unknown``: its task may exist and be billed."""
    now = time.time()
    applied, _ = engine.store.apply(
        job_id,
        SUBMIT_AMBIGUOUS,
        where={"submit_claim": claim} if claim is not None else None,
        set={"unknown_since": now, "error_message": evidence[:2000]},
        due=now + engine.settings.submit_unknown_hold_seconds,
    )
    if applied:
        job = engine.store.get(job_id)
        then = (
            "waiting for its task's webhook"
            if engine.settings.webhook_base_url and not (job and job.kind is JobKind.IMAGE)
            else "the operator decides: relaydance resubmit or relaydance cancel"
        )
        logger.warning(
            "job %s key=%s state=submit_unknown: the submission may have reached the provider "
            "(%s); %s",
            job_id,
            job.alias if job else "?",
            evidence[:200],
            then,
        )
    return applied


def _requeue(engine: Engine, job: Job, claim: int, *, due_in: float) -> bool:
    """Back to ``waiting_for_slot`` after a refusal that created nothing; the seq moves on,
    so the chain that a later grant starts claims above this one."""
    applied, _ = engine.store.apply(
        job.id,
        REQUEUE,
        where={"submit_claim": claim},
        due=time.time() + due_in + engine.settings.step_grace_seconds,
    )
    return applied


def not_durable(engine: Engine, job: Job, claim: int, exc: NotDurable) -> Outcome:
    """The claim is on the primary alone: a failover could lose it and let the job be paid
    for twice. Nothing is sent; the job waits at the head of its line, unbilled."""
    _requeue(engine, job, claim, due_in=NOT_DURABLE_RETRY)
    engine.limits.push_front(job.alias, job.id)  # no learning: the provider said nothing
    engine.send(GRANT, job.alias, countdown=NOT_DURABLE_RETRY)
    logger.warning("job %s key=%s: not sent: %s", job.id, job.alias, exc)
    log_transition(job, "waiting_for_slot", reason="claim not durable")
    return stop("claim not durable; back in line")


def refused_by_account(engine: Engine, job: Job, claim: int, exc: AccountFault) -> Outcome:
    """401, 402 or a 403 for balance, access or the model: nothing was created. The key (or
    its use of the model) is paused now; the job waits at the head of its line, unbilled."""
    _requeue(engine, job, claim, due_in=engine.settings.pause_probe_seconds)
    # The line is paused: acquiring again puts the job first in it (or parks it off the
    # line, for a held model) and gives its slot back without handing it on.
    slot = engine.limits.acquire(job.alias, job.id, model=job.model)
    resume_granted(engine, slot.also_granted)
    log_transition(job, "waiting_for_slot", refused=exc.code, paused=slot.paused or "?")
    return stop(f"{exc.code}: the key is paused; the job waits, unbilled")


def back_in_line(engine: Engine, job: Job, claim: int, exc: RateLimited) -> Outcome:
    """HTTP 429 on submit: nothing was created. Lower the key's limit and queue at the head."""
    notice_new_primary(engine, record=False)  # a new primary: this 429 teaches nothing
    effective = engine.limits.on_rate_limited(
        job.alias,
        retry_after=exc.retry_after,
        in_flight=_live_at_provider(engine, job),
    )
    wait = exc.retry_after if exc.retry_after is not None else 5.0
    _requeue(engine, job, claim, due_in=wait)
    # push_front gives up the slot and queues the job first, without handing the slot
    # to another waiter who would submit into the same overload.
    engine.limits.push_front(job.alias, job.id)
    engine.send(GRANT, job.alias, countdown=wait)
    log_transition(
        job, "waiting_for_slot", reason="429", retry_after=wait, effective_limit=effective
    )
    return stop("rate limited; back in line")


def _live_at_provider(engine: Engine, job: Job) -> int:
    """How many of the key's tasks the provider counted when it refused this one.

    Only holders whose task exists (or may) count: jobs still in line for their POST,
    or this job itself, do not. This is the cap the provider enforces for the key.
    """
    holders = [h for h in engine.limits.holders(job.alias) if h != job.id]
    if not holders:
        return 0
    live = {state.value for state in COUNTED_AT_PROVIDER}
    return sum(1 for state in engine.store.field_of(holders, "state") if state in live)
