"""What a delivered webhook does to its job, run by the ``relaydance.webhook`` task.

The web handler (:func:`worker.web.receiver.handle_webhook`) only checked the token; the body
named a remote task id, which is a hint and nothing more. This step re-fetches that task
with the job's own key and then, by what the provider says:

- the job's recorded task: move the job with :func:`worker.job.remote.apply_remote` when
  the task is final (then the task sends the job's next step, so the download starts at
  once, without waiting for the late safety poll), or note ``running`` without touching
  the safety poll's schedule;
- a task the job never recorded while it has no remote id and may have an orphaned
  submission (``submitting``, ``submit_unknown``, or waiting again after an operator's
  resubmit, or one a failover took back to an earlier state: its webhook's claim is above
  the record's): the first submission of an ambiguous submit, whose reply was lost. The job
  adopts it (records the id, ``-> submitted``) and moves on as above. A job canceled or
  failed with such a submission records the id (it may be billed) without moving. A job
  back in line after a 429 created nothing, so it adopts nothing;
- a task the job never recorded while it has another one, after an operator's resubmit
  (``orphans`` > 0): the job was submitted twice and both are billed. ``duplicate_spend``
  is counted and the extra ids are kept in ``duplicate_remote_ids``; nothing is
  downloaded from it. A job submitted once owns only its recorded task: another id is a
  replay of someone else's task and changes nothing (the receiver does not even queue it).

Duplicate and out-of-order deliveries find the job past the step and change nothing:
states are one-way and every change is a compare-and-set. A webhook never fails a job
on a transport error; the safety poll is still scheduled and finishes the job.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace

from config.settings import SettingsError
from worker.errors import (
    AccountFault,
    Deferred,
    NotDurable,
    NotFound,
    PermanentError,
    RateLimited,
    TransientError,
)
from worker.job import calls
from worker.job.engine import Engine
from worker.job.failover import confirm_later, lost_claim, mark_in_doubt
from worker.job.record import FINAL_STATES, Billing, Job, JobState
from worker.job.remote import apply_remote, charged
from worker.job.states import ALL_STATES, SUBMISSION_IN_DOUBT, WEBHOOK_MOVABLE
from worker.job.step import Outcome, backoff, first_poll_delay, log_transition, moved_on
from worker.job.transitions import (
    ADOPT_AFTER_RESUBMIT,
    ADOPT_ORPHAN,
    SUBMIT_RECORDED,
    WEBHOOK_RUNNING,
)
from worker.provider.dialects import RemoteTask, TaskStatus

__all__ = [
    "DUPLICATE_IDS_FIELD",
    "DUPLICATE_SPEND_FIELD",
    "adopt_task",
    "may_have_orphan",
    "on_webhook",
    "record_duplicate_spend",
]

logger = logging.getLogger(__name__)

S = JobState
DUPLICATE_SPEND_FIELD = "duplicate_spend"
DUPLICATE_IDS_FIELD = "duplicate_remote_ids"
MAX_ATTEMPTS = 5  # re-fetch attempts before leaving the job to its safety poll
CLOCK_SKEW = 120.0  # seconds the provider's clock may be off ours

_UNSETTLED = frozenset({Billing.PENDING, Billing.UNKNOWN})


def may_have_orphan(job: Job, claim: int | None = None) -> bool:
    """Whether the job may have a submission whose task it never recorded (``claim``, a
    submission the record lost to a failover, counts: see :mod:`worker.job.failover`)."""
    if job.remote_task_id:
        return False
    if claim is not None and lost_claim(job, claim):
        return True
    if job.state in SUBMISSION_IN_DOUBT:
        return True
    if job.state in FINAL_STATES:
        return job.billing in _UNSETTLED or job.orphans > 0
    return job.orphans > 0  # back in line after an operator's resubmit


def _stop(reason: str) -> Outcome:
    return Outcome("stop", reason=reason)


def on_webhook(
    engine: Engine, job_id: str, *, task_id: str | None, attempt: int = 0, claim: int | None = None
) -> Outcome:
    """Verify the task a webhook named by fetching it, then move or annotate the job.

    ``claim`` is the submission whose callback URL the delivery came through (proven by the
    receiver); a task the job never recorded is taken only for a submission in doubt, and
    only if the provider says it was created while that submission's POST was out.

    ``next`` means the job needs its next step now (the download after a final task,
    polling after adopting a running one); the task sends it at once.
    """
    job = engine.store.get(job_id)
    if job is None:
        return _stop("unknown or expired job")
    recorded = job.remote_task_id
    hint = task_id or recorded
    if hint is None:
        return _stop("no remote task to look at")
    if claim is not None and lost_claim(job, claim):
        evidence = f"a webhook came through the URL of submission {claim}, which it lacks"
        if mark_in_doubt(engine, job, evidence=evidence, claim=claim):
            job = engine.store.get(job_id) or job
    sent_at = None if claim is None else job.claim_sent_at(claim)
    refused = _not_the_jobs(job, hint, sent_at)
    if refused is not None:
        return refused
    fetched = _fetch(engine, job, hint, attempt)
    if isinstance(fetched, Outcome):
        return fetched
    if sent_at is not None and not _made_while_out(engine, fetched, sent_at):
        logger.warning(
            "job %s: webhook task %s was not created while the submission was out",
            job.id, fetched.task_id,
        )  # fmt: skip
        return _stop("task was created outside its submission's window")
    if recorded is None:
        return _adopt(engine, job, fetched)
    if hint != recorded:
        return record_duplicate_spend(engine, job, task_id=fetched.task_id, fetched=fetched)
    if job.state is S.SUBMITTING:
        # The id was recorded but the state change after it was lost.
        engine.store.apply(job.id, SUBMIT_RECORDED)
        job = engine.store.get(job.id) or job
    return _apply(engine, job, fetched)


def _not_the_jobs(job: Job, hint: str, sent_at: float | None) -> Outcome | None:
    """Why a delivery naming task ``hint`` cannot move the job, or None when it may."""
    recorded = job.remote_task_id
    if recorded is None:
        if not may_have_orphan(job):
            return _stop(f"job is {job.state} with no submission that could be orphaned")
        if sent_at is None:
            return _stop("no submission in doubt sent this delivery's callback URL")
    elif hint == recorded and job.state not in WEBHOOK_MOVABLE:
        return _stop(f"job is already {job.state}")
    elif hint != recorded and (job.orphans == 0 or sent_at is None):
        # One submission created a task, and it is recorded: another id is not this job's,
        # unless it came through the URL of another submission of the job in doubt.
        return _stop("task is not the job's; no other submission of it sent this URL")
    return None


def _fetch(engine: Engine, job: Job, task_id: str, attempt: int) -> RemoteTask | Outcome:
    try:
        return calls.call(engine, job, calls.read_task(task_id))
    except Deferred as exc:
        if exc.reason in ("", "rate", "retry_after"):
            return Outcome("again", countdown=exc.seconds, kwargs={"attempt": attempt})
        return _retry_or_leave(job, attempt, countdown=min(exc.seconds, 30.0), why=exc.reason)
    except SettingsError:
        return _stop("no key configured for the job's alias")
    except NotFound:
        # Not a task of this key: a forged body, or one meant for another account.
        logger.warning("job %s: webhook named task %s, unknown to the job's key", job.id, task_id)
        return _stop("task unknown to the job's key")
    except AccountFault as exc:
        logger.warning("job %s: webhook re-fetch refused (%s); polling goes on", job.id, exc.code)
        return _stop("the key is paused; left to the safety poll")
    except TransientError as exc:
        hint = exc.retry_after if isinstance(exc, RateLimited) else None
        return _retry_or_leave(
            job, attempt, countdown=backoff(attempt, hint=hint, cap=30.0), why=exc.code
        )
    except PermanentError as exc:
        logger.warning("job %s: webhook re-fetch refused: %s", job.id, exc.code)
        return _stop(f"re-fetch refused: {exc.code}")


def _retry_or_leave(job: Job, attempt: int, *, countdown: float, why: str) -> Outcome:
    if attempt + 1 >= MAX_ATTEMPTS:
        logger.warning("job %s: webhook re-fetch gave up (%s); polling goes on", job.id, why)
        return _stop("re-fetch failed; left to the safety poll")
    return Outcome("again", countdown=countdown, kwargs={"attempt": attempt + 1})


def _made_while_out(engine: Engine, task: RemoteTask, sent_at: float) -> bool:
    """Whether the provider's own creation time of ``task`` (when it gives one) lies within
    the submission's window: from its POST, to its call's deadline, give or take the two
    clocks' skew."""
    if task.created_at is None:
        return True  # RelayDance's task names no creation time: the claim binds it alone
    deadline = engine.settings.http_call_deadline
    return sent_at - CLOCK_SKEW <= task.created_at <= sent_at + deadline + CLOCK_SKEW


def _matches(job: Job, task: RemoteTask) -> bool:
    # A task of the same key made for another request is not this job's submission.
    model = task.extra.get("model")
    seconds = task.extra.get("seconds")
    if model is not None and str(model) != str(job.request.get("model")):
        return False
    return seconds is None or str(seconds) == str(job.request.get("seconds"))


def _apply(engine: Engine, job: Job, task: RemoteTask) -> Outcome:
    if task.is_final:
        outcome = apply_remote(engine, job, task, polls_done=job.poll_count, by_webhook=True)
        if outcome.action == "next":
            logger.info("job %s: generated, by webhook; download next", job.id)
            return replace(outcome, url=task.url)  # just read: the download needs no GET
        return outcome
    if task.status is TaskStatus.RUNNING:
        # Not apply_remote: it would pull the next poll forward, and with webhooks on
        # the safety poll should stay late.
        engine.store.apply(job.id, WEBHOOK_RUNNING, set={"remote_status": task.raw_status})
    return _stop(f"task is {task.raw_status or task.status.value}; waiting")


def _adopt(engine: Engine, job: Job, task: RemoteTask) -> Outcome:
    if not _matches(job, task):
        logger.warning("job %s: webhook task %s is for another request", job.id, task.task_id)
        return _stop("task does not match the job's request")
    if job.state in FINAL_STATES:
        # Canceled or failed with a submission in doubt: keep the id, it may be billed.
        failed = task.status is TaskStatus.FAILED and not charged(task)
        billing = Billing.NOT_BILLED if failed else Billing.BILLED
        engine.store.update_fields(
            job.id,
            states={job.state},
            where={"remote_task_id": ""},
            set={"remote_task_id": task.task_id, "remote_status": task.raw_status,
                 "billing": billing.value, "adopted_from": "webhook"},
        )  # fmt: skip
        return _stop(f"job is {job.state}; its orphaned task id is kept")
    adopted = adopt_task(
        engine, job, task_id=task.task_id, status=task.raw_status, source="webhook"
    )
    fresh = engine.store.get(job.id)
    if fresh is None:
        return _stop("job expired")
    if adopted.action != "next":
        if fresh.remote_task_id and fresh.remote_task_id != task.task_id and fresh.orphans:
            # A resubmission won the race: this task is a second, billed one.
            return record_duplicate_spend(engine, fresh, task_id=task.task_id, fetched=task)
        if fresh.remote_task_id != task.task_id or fresh.state not in WEBHOOK_MOVABLE:
            return _stop(f"job is {fresh.state}; not adopted")
    outcome = _apply(engine, fresh, task)
    if adopted.action == "next" and not task.is_final:
        # Nothing polls the adopted task yet: its first poll waits for its due time.
        return Outcome("next", reason="adopted; polls as a safety net")
    return outcome


def adopt_task(engine: Engine, job: Job, *, task_id: str, status: str, source: str) -> Outcome:
    """Make a task of the job's orphaned submission its task: ``-> submitted``.

    ``next`` when adopted (the job moves on from ``submitted``); the job
    takes back a slot, over the limit if need be: the provider counts the task already.
    """
    expected = first_poll_delay(engine, str(job.request["model"]), int(job.request["seconds"]))
    first_poll = time.time() + expected  # as recorded: the poll sent next waits for it
    # In line again only after an operator's resubmit (orphans > 0); a job back in line
    # after a plain 429 created nothing.
    adopt = ADOPT_AFTER_RESUBMIT if job.orphans > 0 else ADOPT_ORPHAN
    try:
        applied, found = engine.store.apply(
            job.id,
            adopt,
            where={"remote_task_id": ""},
            set={"remote_task_id": task_id, "remote_status": status, "adopted_from": source},
            due=time.time() + expected,
            durable=True,
        )
    except NotDurable:  # adopted on the primary: confirmed later, never submitted again
        applied, found = True, job.state
        confirm_later(engine, job.id, task_id=task_id, claim=job.submit_claim)
    if not applied:
        return _stop(f"job is {found}; not adopted")
    engine.limits.take(job.alias, job.id)
    logger.warning(
        "job %s: adopted remote task %s from its %s (the submit reply was lost)",
        job.id,
        task_id,
        source,
    )
    log_transition(job, "submitted", remote=task_id, adopted_from=source)
    return moved_on(job, S.SUBMITTED, next_due=first_poll, remote_task_id=task_id)


def record_duplicate_spend(
    engine: Engine, job: Job, *, task_id: str, fetched: RemoteTask | None = None
) -> Outcome:
    """Count an extra billed remote task on the job (once per task id); downloads nothing.

    ``fetched`` is the task as the provider described it (from a webhook's re-fetch); a
    task this fleet's own POST created needs no check.
    """
    if fetched is not None and fetched.status is TaskStatus.FAILED and not charged(fetched):
        return _stop("the extra task failed, which is not billed")
    if fetched is not None and not _matches(job, fetched):
        return _stop("task does not match the job's request")
    current: Job | None = job
    for _ in range(8):  # compare-and-set on the list; retried only under contention
        if current is None:
            return _stop("job expired")
        known = current.duplicate_remote_ids
        raw = json.dumps(known) if known else ""  # as written: the compare-and-set's value
        if task_id in known:
            return _stop("duplicate spend already recorded")
        applied, _ = engine.store.update_fields(
            current.id,
            states=ALL_STATES,
            where={DUPLICATE_IDS_FIELD: raw},
            set={DUPLICATE_IDS_FIELD: json.dumps([*known, task_id])},
            incr={DUPLICATE_SPEND_FIELD: 1},
        )
        if applied:
            logger.warning(
                "job %s: remote task %s is a second, billed submission (job has %s)",
                current.id,
                task_id,
                current.remote_task_id,
            )
            return _stop("duplicate spend recorded")
        current = engine.store.get(current.id)
    return _stop("duplicate spend not recorded under contention")
