"""Submitting a job: the one step that spends money, and what happens when it goes wrong.

The submit step takes a concurrency slot (or waits in line), claims the job with a number
that only moves forward, POSTs once, and records the remote task id the moment the reply
arrives. Where Redis has replicas, the claim is confirmed by them before the POST leaves
(a claim a failover could lose is not sent: the job waits at the head of its line,
unbilled), and so is the recorded task id (:mod:`worker.job.failover`). Its failures split
by what they prove:

- **nothing was created**: the request never left (:class:`~worker.errors.NotSent`), the
  provider answered a 5xx in its own error JSON (:class:`~worker.errors.ErroredRequest`:
  both providers document that such a request is not billed; it is retried, behind the
  provider's breaker, with the same ``Idempotency-Key``), refused it with a 429 (the job
  goes back to the head of its line), refused the account (401, 402, a 403 for balance,
  access or the model: the key pauses and the job goes back to the head of its line, see
  :mod:`worker.job.calls`) or refused the request with another 4xx (the job fails).
  Billing stays ``none``; a retry is free.
- **the task may exist**: a read timeout, a dropped connection, a gateway's 5xx page or an
  empty 502/504, a 2xx without a task id, or a worker killed between the POST and the
  record (the sweeper finds the job stuck in ``submitting``). The job moves to
  ``submit_unknown`` with the evidence and keeps its slot for
  ``RELAYDANCE_SUBMIT_UNKNOWN_HOLD_SECONDS``, because the task, if it exists, is
  generating. With webhooks the task's own webhook names the job, and the job adopts it
  (:mod:`worker.job.webhook`); without them the operator decides: ``relaydance resubmit``
  (which may pay twice) or ``relaydance cancel``. Only ``RELAYDANCE_PROVIDER_IDEMPOTENT``
  turns this into an automatic retry with the same ``Idempotency-Key``.

A reply that arrives after the job moved on (canceled, or marked unknown by the sweeper)
is never thrown away: its task id is recorded on the job, adopted when it can be.
"""

from __future__ import annotations

import json
import logging
import time

from config.settings import SettingsError
from config.task_names import GRANT
from worker.errors import (
    AccountFault,
    Deferred,
    ErroredRequest,
    NotDurable,
    NotSent,
    PermanentError,
    RateLimited,
    RelayDanceError,
    TransientError,
    UnexpectedResponse,
)
from worker.infra.outage import is_redis_outage
from worker.job import calls
from worker.job.advance import advance
from worker.job.callback import callback_url_for
from worker.job.engine import Engine
from worker.job.failover import confirm_later, lost_claim, mark_in_doubt, notice_new_primary
from worker.job.record import Billing, Job, JobState
from worker.job.states import STEP_STATES
from worker.job.step import (
    Outcome,
    again,
    api_key,
    claim_number,
    fail,
    first_poll_delay,
    load,
    log_transition,
    moved_on,
    resume_granted,
    stop,
    transient,
)
from worker.render.request import RenderRequest

__all__ = ["SubmitRefused", "count_possible_orphan", "record_task", "resubmit", "submit"]

logger = logging.getLogger(__name__)

S = JobState
HOLD_REPLY_SECONDS = 60.0  # how long a task id waits in the worker for Redis to return
_PAUSES = frozenset({"breaker", "held", "model"})
_IN_LINE = frozenset({S.QUEUED, S.WAITING_FOR_SLOT})
NOT_DURABLE_RETRY = 5.0  # a claim no replica confirmed is tried again after this long


class SubmitRefused(ValueError):
    """An operator's resubmit that does not apply to the job; the message says why."""


def submit(engine: Engine, job_id: str, *, seq: int, attempt: int = 0) -> Outcome:
    """Take a slot (or wait in line), then POST the request once and record its task."""
    job = load(engine, job_id, seq, "submit")
    if isinstance(job, Outcome):
        return job
    if job.remote_task_id:  # recorded, but the state change after it was lost
        engine.store.change(job_id, states={S.SUBMITTING}, to=S.SUBMITTED, due=time.time())
        return moved_on(job, S.SUBMITTED, next_due=time.time())
    if attempt and job.submit_claim < claim_number(seq, attempt - 1):
        # This retry follows its own earlier claim, which the record no longer has.
        evidence = f"submit attempt {attempt} found no claim of attempt {attempt - 1}"
        mark_in_doubt(engine, job, evidence=evidence)
        return stop("the record went back in time")
    try:
        api_key(engine, job)  # a job of an alias with no key fails before it takes a slot
    except SettingsError as exc:
        return fail(engine, job, "unknown_key", str(exc))
    waiting = _take_slot(engine, job, seq)
    if waiting is not None:
        return waiting
    try:
        gate = calls.admit(engine, job, submit=True)
    except Deferred as exc:
        if exc.reason not in _PAUSES:
            return again(exc.seconds, attempt=attempt)
        # The line paused since this job was granted its slot: it waits in line (or off it).
        waiting = _take_slot(engine, job, seq)
        if waiting is not None:
            return waiting
        return again(min(exc.seconds, engine.settings.step_grace_seconds), attempt=attempt)
    claim = claim_number(seq, attempt)
    now = time.time()
    try:
        applied, _ = engine.store.change(
            job_id,
            states=STEP_STATES["submit"],
            to=S.SUBMITTING,
            where={"seq": seq},
            below={"submit_claim": claim},
            set={"submit_claim": claim, "billing": Billing.PENDING.value, "submit_intent_at": now},
            incr={"submit_attempts": 1},
            due=now + engine.settings.http_call_deadline + engine.settings.step_grace_seconds,
            durable=True,
        )
    except NotDurable as exc:
        return _not_durable(engine, job, claim, exc)
    if not applied:
        return stop("submit claimed by a later message, or the job moved on")
    log_transition(job, "submitting", attempt=job.submit_attempts + 1)
    request = RenderRequest.model_validate(job.request)
    urls = job.media_urls
    callback = callback_url_for(engine.settings, job_id, claim=claim, now=now)
    body = request.to_body(callback_url=callback, media_urls=urls)
    try:
        task = calls.perform(
            engine,
            job,
            gate,
            lambda client, key: client.submit(body, api_key=key, idempotency_key=job_id),
            submit=True,
        )
    except RateLimited as exc:
        return _back_in_line(engine, job, claim, exc)
    except AccountFault as exc:
        return _refused_by_account(engine, job, claim, exc)
    except (NotSent, ErroredRequest) as exc:
        # Never left, or the provider answered in its own words that it errored: not billed.
        _nothing_billed(engine, job_id, claim)
        if engine.limits.provider_down(job.alias):
            # That opened the breaker (or it was open): wait in the paused line, which
            # moves the moment a probe gets through, instead of on a growing countdown.
            waiting = _take_slot(engine, job, seq, claimed=True)
            if waiting is not None:
                return waiting
        return transient(engine, job, exc, attempt)
    except (TransientError, UnexpectedResponse) as exc:
        return _ambiguous(engine, job, claim, exc, attempt, sent_at=now)
    except PermanentError as exc:
        return fail(engine, job, exc.code, str(exc), billing=Billing.NONE.value)
    return _record_through_outage(engine, job, claim, task_id=task.task_id, status=task.raw_status)


def _take_slot(engine: Engine, job: Job, seq: int, *, claimed: bool = False) -> Outcome | None:
    """None when the job holds a slot; else it waits in its key's line, or off it while the
    key may not use its model (a stop)."""
    slot = engine.limits.acquire(job.alias, job.id, model=job.model)
    resume_granted(engine, slot.also_granted)  # waiters ahead of us got slots on the way
    if slot.granted:
        return None
    # Parked off the line, the job is looked at again when its model's next probe is due.
    wait = slot.wait if slot.paused == "model" else 0.0
    # Back from a claim (this message's, or an earlier one's): the next submit claims above it.
    claimed = claimed or job.state is S.SUBMITTING
    applied, _ = engine.store.change(
        job.id,
        states={S.QUEUED, S.WAITING_FOR_SLOT, S.SUBMITTING},
        to=S.WAITING_FOR_SLOT,
        where={"seq": seq},
        where_not={"billing": Billing.PENDING.value},
        set={"billing": Billing.NONE.value} if claimed else None,
        incr={"seq": 1} if claimed else None,
        due=time.time() + wait + engine.settings.step_grace_seconds,
    )
    if applied and (job.state != S.WAITING_FOR_SLOT or slot.paused):
        details: dict[str, object] = {"position": slot.position}
        if slot.paused:
            details["paused"] = calls.why_waiting(engine, job.alias, job.model) or slot.paused
        log_transition(job, "waiting_for_slot", **details)
    return stop("waiting for a slot")


def _nothing_billed(engine: Engine, job_id: str, claim: int) -> None:
    engine.store.change(
        job_id,
        states={S.SUBMITTING},
        where={"submit_claim": claim},
        set={"billing": Billing.NONE.value},
    )


def _ambiguous(
    engine: Engine, job: Job, claim: int, exc: RelayDanceError, attempt: int, *, sent_at: float
) -> Outcome:
    """The POST may have created a task: never POST again blindly."""
    settings = engine.settings
    if (
        settings.idempotent_for(job.alias)
        and isinstance(exc, TransientError)
        and attempt < settings.max_transient_retries
        and job.batch is None  # a budget has no room reserved for a second task
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
    applied, _ = engine.store.change(
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
    applied, _ = engine.store.change(
        job_id,
        states={S.SUBMITTING},
        to=S.SUBMIT_UNKNOWN,
        where={"submit_claim": claim} if claim is not None else None,
        set={
            "billing": Billing.UNKNOWN.value,
            "unknown_since": now,
            "error_code": "submit_unknown",
            "error_message": evidence[:2000],
        },
        due=now + engine.settings.submit_unknown_hold_seconds,
    )
    if applied:
        job = engine.store.get(job_id)
        then = (
            "waiting for its task's webhook"
            if engine.settings.webhook_base_url
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
    so the submit that a later grant sends claims above this one."""
    applied, _ = engine.store.change(
        job.id,
        states={S.SUBMITTING},
        to=S.WAITING_FOR_SLOT,
        where={"submit_claim": claim},
        set={"billing": Billing.NONE.value},
        incr={"seq": 1},
        due=time.time() + due_in + engine.settings.step_grace_seconds,
    )
    return applied


def _not_durable(engine: Engine, job: Job, claim: int, exc: NotDurable) -> Outcome:
    """The claim is on the primary alone: a failover could lose it and let the job be paid
    for twice. Nothing is sent; the job waits at the head of its line, unbilled."""
    _requeue(engine, job, claim, due_in=NOT_DURABLE_RETRY)
    engine.limits.push_front(job.alias, job.id)  # no learning: the provider said nothing
    engine.send(GRANT, job.alias, countdown=NOT_DURABLE_RETRY)
    logger.warning("job %s key=%s: not sent: %s", job.id, job.alias, exc)
    log_transition(job, "waiting_for_slot", reason="claim not durable")
    return stop("claim not durable; back in line")


def _refused_by_account(engine: Engine, job: Job, claim: int, exc: AccountFault) -> Outcome:
    """401, 402 or a 403 for balance, access or the model: nothing was created. The key (or
    its use of the model) is paused now; the job waits at the head of its line, unbilled."""
    _requeue(engine, job, claim, due_in=engine.settings.pause_probe_seconds)
    # The line is paused: acquiring again puts the job first in it (or parks it off the
    # line, for a held model) and gives its slot back without handing it on.
    slot = engine.limits.acquire(job.alias, job.id, model=job.model)
    resume_granted(engine, slot.also_granted)
    log_transition(job, "waiting_for_slot", refused=exc.code, paused=slot.paused or "?")
    return stop(f"{exc.code}: the key is paused; the job waits, unbilled")


def _back_in_line(engine: Engine, job: Job, claim: int, exc: RateLimited) -> Outcome:
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
    live = {S.SUBMIT_UNKNOWN.value, S.SUBMITTED.value, S.RUNNING.value, S.CANCELED.value}
    return sum(1 for state in engine.store.field_of(holders, "state") if state in live)


def _record_through_outage(
    engine: Engine, job: Job, claim: int, *, task_id: str, status: str
) -> Outcome:
    """Record the task a POST just created, holding its id here while Redis is away.

    The reply exists only in this process: a retry message would need the broker, which is
    the same Redis, and a job left ``submitting`` would be judged in doubt. So the write is
    tried again, with back-off, for up to :data:`HOLD_REPLY_SECONDS` (a Redis restart).
    """
    waited, delay = 0.0, 0.2
    while True:
        try:
            return record_task(engine, job, claim, task_id=task_id, status=status)
        except Exception as exc:
            if not is_redis_outage(exc) or waited >= HOLD_REPLY_SECONDS:
                raise
            logger.warning(
                "job %s: Redis is away (%s); holding task %s until it answers",
                job.id, type(exc).__name__, task_id,
            )  # fmt: skip
            time.sleep(delay)
            waited, delay = waited + delay, min(delay * 2, 5.0)


def record_task(engine: Engine, job: Job, claim: int, *, task_id: str, status: str = "") -> Outcome:
    """Record the task a POST created; a job that moved on meanwhile still keeps its id."""
    expected = first_poll_delay(engine, str(job.request["model"]), int(job.request["seconds"]))
    first_poll = time.time() + expected  # as recorded: the poll sent next waits for it
    try:
        recorded, _ = engine.store.change(
            job.id,
            states={S.SUBMITTING},
            to=S.SUBMITTED,
            where={"submit_claim": claim},
            set={
                "remote_task_id": task_id,
                "remote_status": status,
                "billing": Billing.BILLED.value,
            },
            due=time.time() + expected,
            durable=True,
        )
    except NotDurable:
        recorded = True  # on the primary: the job goes on, and the id is confirmed later
        confirm_later(engine, job.id, task_id=task_id, claim=claim)
    if recorded:
        engine.limits.on_success(job.alias)
        log_transition(job, "submitted", remote=task_id, first_poll=f"{expected:.1f}s")
        # Scheduled once: recorded as the job's due time, which the next poll waits out.
        return moved_on(job, S.SUBMITTED, next_due=first_poll, remote_task_id=task_id)
    return _record_late(engine, job.id, task_id=task_id, status=status, claim=claim)


def _record_late(engine: Engine, job_id: str, *, task_id: str, status: str, claim: int) -> Outcome:
    from worker.job.webhook import adopt_task, record_duplicate_spend  # it builds on us

    job = engine.store.get(job_id)
    if job is None:
        logger.error("remote task %s was created for job %s, which expired", task_id, job_id)
        return stop("job expired")
    if job.remote_task_id == task_id:
        return stop("task already recorded")
    if job.remote_task_id:
        return record_duplicate_spend(engine, job, task_id=task_id)
    if lost_claim(job, claim):  # a failover took the claim back: in doubt, then adopted
        evidence = f"the reply of submission {claim} (task {task_id}) found it without the claim"
        if mark_in_doubt(engine, job, evidence=evidence, claim=claim):
            job = engine.store.get(job_id) or job
    if job.state is S.SUBMIT_UNKNOWN or (job.orphans and job.state in _IN_LINE):
        return adopt_task(engine, job, task_id=task_id, status=status, source="late reply")
    # Canceled or failed while the POST was in flight: the task exists and may be billed.
    applied, _ = engine.store.change(
        job_id,
        states={job.state},
        where={"remote_task_id": ""},
        set={"remote_task_id": task_id, "remote_status": status, "billing": "billed"},
    )
    if applied:
        logger.warning(
            "job %s is %s, but the provider created task %s for it; it may be billed",
            job_id,
            job.state,
            task_id,
        )
    return stop(f"job is {job.state}; task id kept")


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
        applied, _ = engine.store.change(
            job_id,
            states={S.SUBMIT_UNKNOWN},
            to=S.WAITING_FOR_SLOT,
            set={
                "billing": Billing.NONE.value,
                "error_code": "",
                "error_message": "",
                "orphan_claims": json.dumps(claims),
            },
            incr={"seq": 1, "orphans": 1},
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
