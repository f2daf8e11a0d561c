"""What every step of a render job shares: its outcome, loading the job, failing it.

A step is a plain function ``step(engine, job_id, *, seq, ...) -> Outcome``; the thin
Celery tasks in ``tasks/`` map the outcome to sending the job's next step
(:func:`worker.job.advance.advance`), ``Ignore`` (the job waits for whatever moves it
next) or ``self.retry(countdown=...)``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pydantic import SecretStr

from worker.errors import RateLimited, TransientError
from worker.job.advance import advance_ids
from worker.job.engine import Engine
from worker.job.failover import mark_in_doubt
from worker.job.notify import notify_final
from worker.job.record import Job, JobState
from worker.job.states import STEP_STATES
from worker.job.timing import first_poll_delay_for
from worker.job.transitions import FAIL

__all__ = [
    "CLAIM_SPAN",
    "ENQUEUE_GRACE",
    "NEXT",
    "Outcome",
    "again",
    "api_key",
    "backoff",
    "claim_number",
    "fail",
    "first_poll_delay",
    "grant_waiters",
    "load",
    "log_transition",
    "moved_on",
    "release",
    "resume_granted",
    "stop",
    "transient",
]

logger = logging.getLogger(__name__)

ENQUEUE_GRACE = 30.0  # a job its producer never confirmed is abandoned after this
CLAIM_SPAN = 1_000_000  # attempts per seq in a claim number: seq * CLAIM_SPAN + attempt


@dataclass(frozen=True)
class Outcome:
    """What the task should do after a step."""

    action: Literal["next", "stop", "again"]
    countdown: float = 0.0
    reason: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)
    # The clip's signed url, when the step has just read it from the provider: the task
    # may download with it at once. Never put in a message: it is a secret.
    url: str | None = field(default=None, repr=False, compare=False)
    # With ``next``: the job as the step left it (its state, its recorded due time), so
    # the next step is sent without reading the record again; None reads it.
    job: Job | None = field(default=None, repr=False, compare=False)


NEXT = Outcome("next")


def moved_on(job: Job, state: JobState, **fields: Any) -> Outcome:
    """``next``, with the job as the step left it: in ``state``, with ``fields`` changed."""
    return Outcome("next", job=replace(job, state=state, **fields))


def stop(reason: str) -> Outcome:
    return Outcome("stop", reason=reason)


def again(countdown: float, **kwargs: Any) -> Outcome:
    return Outcome("again", countdown=max(countdown, 0.0), kwargs=kwargs)


def load(engine: Engine, job_id: str, seq: int, step: str) -> Job | Outcome:
    """The job, if this message is current and the job is in a state ``step`` acts in
    (:data:`~worker.job.states.STEP_STATES`).

    A job its producer has not confirmed yet (the message raced the confirmation) is
    waited for briefly; one never confirmed is abandoned by the sweeper, never run. A
    message whose seq is above the record's proves the record went back in time (a Redis
    failover lost writes): a job with no task recorded is then in doubt, never submitted.
    """
    job = engine.store.get(job_id)
    if job is None:
        return stop("unknown or expired job")
    if job.seq != seq:
        if seq > job.seq:
            evidence = f"a {step} message at seq {seq} found the record at seq {job.seq}"
            mark_in_doubt(engine, job, evidence=evidence)
        return stop(f"stale message (seq {seq}, job at {job.seq})")
    if job.state not in STEP_STATES[step]:
        return stop(f"job is {job.state}")
    if job.enqueue_pending:
        if time.time() - job.created_at > ENQUEUE_GRACE:
            return stop("the producer never confirmed the job")
        return again(0.2)
    return job


def claim_number(seq: int, attempt: int) -> int:
    """The claim of a step message: later messages (higher seq, then attempt) claim more."""
    return seq * CLAIM_SPAN + min(attempt, CLAIM_SPAN - 1)


def api_key(engine: Engine, job: Job) -> SecretStr:
    return engine.settings.key_for(job.alias)


def log_transition(job: Job, state: str, **details: Any) -> None:
    elapsed = time.time() - job.created_at if job.created_at else 0.0
    extra = " ".join(f"{k}={v}" for k, v in details.items())
    model, fields = job.request.get("model"), {"job_id": job.id, "key": job.alias, "state": state}
    logger.info(
        "job %s key=%s state=%s model=%s elapsed=%.2fs %s",
        job.id, job.alias, state, model, elapsed, extra, extra=fields,
    )  # fmt: skip


def backoff(attempt: int, *, hint: float | None = None, cap: float = 60.0) -> float:
    """The one backoff of a retried step: doubling from a second up to ``cap``, jittered,
    never sooner than the provider's ``Retry-After`` ``hint``."""
    base = min(2.0**attempt, cap) * random.uniform(0.5, 1.5)  # noqa: S311 - jitter only
    return max(base, hint or 0.0)


def fail(engine: Engine, job: Job, code: str, message: str, **fields: object) -> Outcome:
    """Fail the job (unless it is final already) and free its slot or place in line."""
    applied, _ = engine.store.apply(
        job.id, FAIL, set={"error_code": code, "error_message": message[:2000], **fields}
    )
    if applied:
        log_transition(job, "failed", code=code)
        release(engine, job)
        notify_final(engine, job.id)
    return stop(f"failed: {code}")


def release(engine: Engine, job: Job) -> None:
    """Give up the job's slot (or its place in line) and nudge the waiters it goes to."""
    resume_granted(engine, engine.limits.release(job.alias, job.id))


def resume_granted(engine: Engine, job_ids: Iterable[str]) -> None:
    """Start the jobs that were just given a slot: each moves on from its state."""
    advance_ids(engine, job_ids)


def grant_waiters(engine: Engine, alias: str) -> list[str]:
    """Fill the key's free slots from the head of its line and start those jobs."""
    granted = engine.limits.grant_waiters(alias)
    resume_granted(engine, granted)
    return granted


def transient(
    engine: Engine,
    job: Job,
    exc: TransientError,
    attempt: int,
    *,
    cap: float = 60.0,
    **kwargs: Any,
) -> Outcome:
    """Retry a step after a transient error, by countdown with back-off.

    After ``RELAYDANCE_MAX_TRANSIENT_RETRIES`` the job fails only when the provider answers
    other calls well (its breaker is closed and no failure has counted up since the last
    success): then the trouble is this job's. While the provider is down, or for a 429, the
    job waits: an outage is a pause, never a failed job.
    """
    hint = exc.retry_after if isinstance(exc, RateLimited) else None
    if (
        attempt >= engine.settings.max_transient_retries
        and not isinstance(exc, RateLimited)
        and not engine.limits.provider_unwell(job.alias)
    ):
        return fail(engine, job, exc.code, f"gave up after {attempt + 1} attempts: {exc}")
    delay = backoff(attempt, hint=hint, cap=cap)
    logger.warning("job %s %s; retrying in %.1fs: %s", job.id, exc.code, delay, exc)
    return again(delay, attempt=attempt + 1, **kwargs)


def first_poll_delay(engine: Engine, model: str, seconds: int) -> float:
    """Seconds from submission to the first poll: the safety poll with webhooks, else the
    schedule's first poll (early while the learned estimate is young)."""
    settings = engine.settings
    estimate = engine.timing.estimate(model, seconds)
    if settings.webhook_base_url:
        return max(settings.webhook_safety_poll_seconds, estimate.seconds)
    if settings.poll_first_delay is not None:
        return settings.poll_first_delay
    return first_poll_delay_for(estimate, minimum=settings.poll_interval_min)
