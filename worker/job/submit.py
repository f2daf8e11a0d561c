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

An image job's POST (:mod:`worker.job.images`) is read by the same rules; its reply holds
the images themselves. A lost one has no task and no webhook: the operator decides.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from pydantic import SecretStr

from config.settings import SettingsError
from worker.errors import (
    AccountFault,
    Deferred,
    ErroredRequest,
    NotDurable,
    NotSent,
    PermanentError,
    RateLimited,
    TransientError,
    UnexpectedResponse,
)
from worker.infra.outage import is_redis_outage
from worker.job import calls, images, still_refs
from worker.job.advance import advance, needs_prepare
from worker.job.callback import callback_url_for
from worker.job.engine import Engine
from worker.job.failover import confirm_later, lost_claim, mark_in_doubt
from worker.job.record import Billing, Job, JobKind, JobState
from worker.job.resubmit import SubmitRefused, resubmit
from worker.job.states import IN_LINE
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
from worker.job.submit_refusals import (
    ambiguous,
    back_in_line,
    count_possible_orphan,
    mark_unknown,
    not_durable,
    refused_by_account,
)
from worker.job.transitions import SUBMIT_ACCEPTED, SUBMIT_RECORDED, SUBMIT_STARTED, WAIT_FOR_SLOT
from worker.limits.rate import Gate
from worker.provider.client import ApiClient

# Re-exported: SubmitRefused and resubmit (worker.job.resubmit), count_possible_orphan and
# mark_unknown (worker.job.submit_refusals) are imported from here by other parts.
__all__ = [
    "SubmitRefused",
    "count_possible_orphan",
    "mark_unknown",
    "record_task",
    "resubmit",
    "submit",
]

logger = logging.getLogger(__name__)

S = JobState
T = TypeVar("T")
HOLD_REPLY_SECONDS = 60.0  # how long a task id waits in the worker for Redis to return
_PAUSES = frozenset({"breaker", "held", "model"})


def submit(engine: Engine, job_id: str, *, seq: int, attempt: int = 0) -> Outcome:
    """Take a slot (or wait in line), then POST the request once and record its task."""
    job = load(engine, job_id, seq, "submit")
    if isinstance(job, Outcome):
        return job
    if job.remote_task_id:  # recorded, but the state change after it was lost
        engine.store.apply(job_id, SUBMIT_RECORDED, due=time.time())
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
    gate = _admitted(engine, job, seq, attempt)
    if isinstance(gate, Outcome):
        return gate
    claim = claim_number(seq, attempt)
    now = time.time()
    try:
        applied, _ = engine.store.apply(
            job_id,
            SUBMIT_STARTED,
            where={"seq": seq},
            below={"submit_claim": claim},
            set={"submit_claim": claim, "submit_intent_at": now},
            due=now + engine.settings.http_call_deadline + engine.settings.step_grace_seconds,
            durable=True,
        )
    except NotDurable as exc:
        return not_durable(engine, job, claim, exc)
    if not applied:
        return stop("submit claimed by a later message, or the job moved on")
    log_transition(job, "submitting", attempt=job.submit_attempts + 1)
    return _post(engine, job, gate, seq=seq, claim=claim, attempt=attempt, sent_at=now)


def _admitted(engine: Engine, job: Job, seq: int, attempt: int) -> Gate | Outcome:
    """The gate's word on the POST once the job holds a slot; an Outcome while it waits."""
    waiting = _take_slot(engine, job, seq)
    if waiting is not None:
        return waiting
    if needs_prepare(job, now=time.time()):  # it waited past its inputs' trust
        advance(engine, job)  # prepare makes them again (it keeps the slot), then submits
        return stop("its inputs' urls are made again first")
    try:
        return calls.admit(engine, job, submit=True)
    except Deferred as exc:
        if exc.reason not in _PAUSES:
            return again(exc.seconds, attempt=attempt)
        # The line paused since this job was granted its slot: it waits in line (or off it).
        waiting = _take_slot(engine, job, seq)
        if waiting is not None:
            return waiting
        return again(min(exc.seconds, engine.settings.step_grace_seconds), attempt=attempt)


def _post(
    engine: Engine, job: Job, gate: Gate, *, seq: int, claim: int, attempt: int, sent_at: float
) -> Outcome:
    """POST the claimed job's request once; record its task (or its images), or act on
    what went wrong."""
    if job.kind is JobKind.IMAGE:
        urls = _call(engine, job, gate, images.sender(job), seq=seq, claim=claim,
                     attempt=attempt, sent_at=sent_at)  # fmt: skip
        if isinstance(urls, Outcome):
            return urls
        return _hold_reply(job, lambda: images.record_images(engine, job, claim, urls=urls),
                           what=f"{len(urls)} image urls")  # fmt: skip
    uploads = engine.store.uploads(job)  # kept apart from the record
    request = still_refs.resolved(engine, job, claim, uploads=uploads)  # stills' urls
    if isinstance(request, Outcome):
        return request
    callback = callback_url_for(engine.settings, job.id, claim=claim, now=sent_at)
    body = request.to_body(callback_url=callback, media_urls=uploads)
    task = _call(
        engine,
        job,
        gate,
        lambda client, key: client.submit(body, api_key=key, idempotency_key=job.id),
        seq=seq,
        claim=claim,
        attempt=attempt,
        sent_at=sent_at,
    )
    if isinstance(task, Outcome):
        return task
    return _hold_reply(
        job,
        lambda: record_task(engine, job, claim, task_id=task.task_id, status=task.raw_status),
        what=f"task {task.task_id}",
    )


def _call(
    engine: Engine, job: Job, gate: Gate, send: Callable[[ApiClient, SecretStr], T], *,
    seq: int, claim: int, attempt: int, sent_at: float,
) -> T | Outcome:  # fmt: skip
    """Make the POST; its reply, or the Outcome of a failure, read by what it proves."""
    try:
        return calls.perform(engine, job, gate, send, submit=True)
    except RateLimited as exc:
        return back_in_line(engine, job, claim, exc)
    except AccountFault as exc:
        return refused_by_account(engine, job, claim, exc)
    except (NotSent, ErroredRequest) as exc:
        # Never left, or the provider answered in its own words that it errored: not billed.
        _nothing_billed(engine, job.id, claim)
        if engine.limits.provider_down(job.alias):
            # That opened the breaker (or it was open): wait in the paused line, which
            # moves the moment a probe gets through, instead of on a growing countdown.
            waiting = _take_slot(engine, job, seq, claimed=True)
            if waiting is not None:
                return waiting
        return transient(engine, job, exc, attempt)
    except (TransientError, UnexpectedResponse) as exc:
        return ambiguous(engine, job, claim, exc, attempt, sent_at=sent_at)
    except PermanentError as exc:  # a 400 citing a still's url may be sent again, uploaded
        return still_refs.resent(engine, job, claim, exc) or fail(
            engine, job, exc.code, str(exc), billing=Billing.NONE.value
        )


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
    applied, _ = engine.store.apply(
        job.id,
        WAIT_FOR_SLOT,
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
    engine.store.update_fields(
        job_id,
        states={S.SUBMITTING},
        where={"submit_claim": claim},
        set={"billing": Billing.NONE.value},
    )


def _hold_reply(job: Job, record: Callable[[], Outcome], *, what: str) -> Outcome:
    """Record what a POST just created (``record``), holding it here while Redis is away.

    The reply exists only in this process: a retry message would need the broker, which is
    the same Redis, and a job left ``submitting`` would be judged in doubt. So the write is
    tried again, with back-off, for up to :data:`HOLD_REPLY_SECONDS` (a Redis restart).
    """
    waited, delay = 0.0, 0.2
    while True:
        try:
            return record()
        except Exception as exc:
            if not is_redis_outage(exc) or waited >= HOLD_REPLY_SECONDS:
                raise
            logger.warning(
                "job %s: Redis is away (%s); holding %s until it answers",
                job.id, type(exc).__name__, what,
            )  # fmt: skip
            time.sleep(delay)
            waited, delay = waited + delay, min(delay * 2, 5.0)


def record_task(engine: Engine, job: Job, claim: int, *, task_id: str, status: str = "") -> Outcome:
    """Record the task a POST created; a job that moved on meanwhile still keeps its id."""
    expected = first_poll_delay(engine, str(job.request["model"]), int(job.request["seconds"]))
    first_poll = time.time() + expected  # as recorded: the poll sent next waits for it
    try:
        recorded, _ = engine.store.apply(
            job.id,
            SUBMIT_ACCEPTED,
            where={"submit_claim": claim},
            set={"remote_task_id": task_id, "remote_status": status},
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
    if job.state is S.SUBMIT_UNKNOWN or (job.orphans and job.state in IN_LINE):
        return adopt_task(engine, job, task_id=task_id, status=status, source="late reply")
    # Canceled or failed while the POST was in flight: the task exists and may be billed.
    applied, _ = engine.store.update_fields(
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
