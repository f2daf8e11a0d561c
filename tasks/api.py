"""The producer API for Django, Flask, scripts and the CLI: enqueue, inspect, wait, cancel."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import redis

from config.settings import get_settings
from tasks.canvas import chain_for
from worker.errors import EnqueueFailed, InvalidRequest
from worker.infra.waiting import wait_until_final
from worker.job import pipeline
from worker.job.engine import Engine, get_engine
from worker.job.record import Job, JobState, new_job_id
from worker.job.submit import SubmitRefused
from worker.render.aliases import alias_problem
from worker.render.request import RenderRequest
from worker.render.validation import validate_request

__all__ = [
    "JobNotFound",
    "cancel",
    "clip_url",
    "enqueue_render",
    "get_job",
    "new_job_id",
    "resubmit",
    "retake",
    "wait",
]

logger = logging.getLogger(__name__)


class JobNotFound(LookupError):
    """No job with this id (never created, or expired after the retention period)."""


def enqueue_render(
    request: RenderRequest | Mapping[str, Any],
    *,
    key: str = "default",
    on_done: str | None = None,
    check_on_done: bool = False,
) -> str:
    """Validate a render request, record the job and enqueue it; return the job id at once.

    The request is checked by the rules of the provider behind ``key`` (RelayDance or
    Kinovi). All or nothing: either the job id comes back and the job runs, or an
    exception comes back and the job never submits, so a caller may retry without paying
    twice.

    Raises :class:`~worker.errors.InvalidRequest` (nothing is enqueued) on bad input, and
    :class:`~worker.errors.EnqueueFailed` when the broker did not take the message.
    ``on_done`` names a Celery task of the producer's own, sent the job summary when the
    job ends (done, failed or canceled). With ``check_on_done``, that name must be
    registered on the fleet's app in this process (import the module that defines it).
    """
    valid = _validated(request, key=key, on_done=on_done, check_on_done=check_on_done)
    engine = get_engine()
    # Pending until the message is out: no step acts on it, and if this process fails
    # before confirming, the sweeper cancels it unsent.
    grace = engine.settings.step_grace_seconds  # the sweeper resumes a lost first message
    job_id = engine.store.create_render(
        valid, alias=key, on_done=on_done, pending=True, due_in=grace
    )
    _send(engine, job_id)
    logger.info(
        "job %s key=%s state=queued model=%s", job_id, key, valid.model,
        extra={"job_id": job_id, "key": key, "state": "queued"},
    )  # fmt: skip
    return job_id


def _send(engine: Engine, job_id: str) -> None:
    """Send a pending job's chain, then let it run; all or nothing (see enqueue_render)."""
    job = engine.store.get(job_id)
    assert job is not None
    signature = chain_for(job)
    try:
        if signature is not None:
            signature.apply_async()
    except Exception as exc:  # kombu and redis errors alike: the message may not exist
        with contextlib.suppress(Exception):
            engine.store.abandon(job_id, reason=f"enqueue failed: {type(exc).__name__}")
        raise EnqueueFailed(
            f"job {job_id} was not enqueued ({type(exc).__name__}); it will never run"
        ) from exc
    _confirm(engine, job_id)


def retake(job_id: str, *, prompt: str | None = None) -> str:
    """Render a finished job again as a new job, optionally with a new prompt; its id.

    The old request (with ``prompt`` in place of its prompt) is validated as any request
    is, and the two jobs are linked both ways (``retake_of``, ``retakes``). A batch's job
    is retaken as that line's next take: its cost is reserved against the batch's budget,
    and the batch report shows the latest take with the others listed. All or nothing,
    as :func:`enqueue_render`. Raises :class:`JobNotFound`, and
    :class:`~worker.errors.InvalidRequest` for a job not final yet, a request no longer
    valid (a key gone, a local file moved) or a batch budget that has no room.
    """
    from worker.batch.retake import retake_in_batch
    from worker.batch.tracker import BatchTracker

    old = get_job(job_id)
    if not old.is_final:
        raise InvalidRequest([(
            "job", f"{job_id} is {old.state.value}; a retake renders a finished job again: "
            "wait for it to end, or cancel it",
        )])  # fmt: skip
    data = dict(old.request)
    if prompt is not None:
        data["prompt"] = prompt
    valid = _validated(data, key=old.alias, on_done=None, check_on_done=False)
    engine = get_engine()
    new_id = retake_in_batch(BatchTracker(engine), old, valid) if old.batch else None
    if new_id is None:  # on its own (or its batch expired): the producer's on_done again
        new_id = engine.store.create_render(
            valid, alias=old.alias, on_done=old.on_done, pending=True,
            due_in=engine.settings.step_grace_seconds, extra={"retake_of": old.id},
        )  # fmt: skip
    engine.store.add_retake(old.id, new_id)
    _send(engine, new_id)
    logger.info("job %s key=%s state=queued retakes %s", new_id, old.alias, old.id,
                extra={"job_id": new_id, "key": old.alias, "state": "queued"})  # fmt: skip
    return new_id


def _validated(
    request: RenderRequest | Mapping[str, Any],
    *,
    key: str,
    on_done: str | None,
    check_on_done: bool,
) -> RenderRequest:
    """Every check :func:`enqueue_render` makes before anything is written or sent."""
    settings = get_settings()
    bad_key = alias_problem(key, settings.keys())
    if bad_key:  # before anything else reads it: a key given as the alias goes no further
        raise InvalidRequest([("key", bad_key)])
    valid = validate_request(request, provider=settings.provider_for(key))
    if on_done is not None and not on_done.strip():
        raise InvalidRequest([("on_done", "is empty; give a Celery task name or leave it out")])
    if on_done is not None and check_on_done:
        _check_registered(on_done)
    return valid


def _confirm(engine: Engine, job_id: str, *, tries: int = 3) -> None:
    """Let the job run; on a Redis error, read back what happened before deciding."""
    for attempt in range(tries):
        try:
            if engine.store.confirm(job_id, due_in=engine.settings.step_grace_seconds):
                return
            job = engine.store.get(job_id)
        except redis.RedisError:
            time.sleep(0.2 * (attempt + 1))
            continue
        if job is not None and not job.enqueue_pending and job.state is not JobState.CANCELED:
            return  # an earlier try landed although its reply was lost
        break
    raise EnqueueFailed(
        f"job {job_id} could not be confirmed; it will never run (the sweeper cancels it)"
    )


def _check_registered(name: str) -> None:
    from worker import app

    if name in app.tasks:
        return
    ours = sorted(n for n in app.tasks if not n.startswith(("celery.", "relaydance.")))
    known = ", ".join(ours) or "none"
    raise InvalidRequest([(
        "on_done",
        f"no task named {name!r} is registered on the fleet's app (registered: {known}); "
        "check the spelling, and import the module that defines it",
    )])  # fmt: skip


def get_job(job_id: str) -> Job:
    """The job's current record; raises :class:`JobNotFound`."""
    job = get_engine().store.get(job_id)
    if job is None:
        raise JobNotFound(f"no job {job_id!r} (unknown, or expired after the retention period)")
    return job


def clip_url(job: Job | str, *, expires_in: int | None = None) -> str | None:
    """A time-limited presigned HTTPS URL of a finished job's clip, when it is in a bucket.

    None while the job is not done, and for a local output directory (serve the file at
    ``job.output_path`` yourself). ``expires_in`` defaults to
    ``RELAYDANCE_S3_PRESIGN_SECONDS``. The URL grants read access: hand it to the viewer,
    never log or store it. Raises :class:`JobNotFound` for an unknown job id.
    """
    if isinstance(job, str):
        job = get_job(job)
    if job.state is not JobState.DONE or not job.output_uri:
        return None
    return get_engine().storage.presigned_url(job.output_uri, expires_in=expires_in)


def wait(
    job_id: str,
    *,
    timeout: float = 600.0,
    on_change: Callable[[Job], None] | None = None,
    interval: float = 0.25,
) -> Job:
    """Block until the job is final or ``timeout`` passes; return its record.

    ``on_change`` is called with each new snapshot (for progress display). Raises
    :class:`TimeoutError` with the job's state when the timeout passes first.
    """
    return wait_until_final(
        lambda: get_job(job_id),
        lambda job: job.is_final,
        timeout=timeout,
        interval=interval,
        on_progress=on_change,
        progress_of=lambda job: (job.state.value, job.poll_count),
        timeout_message=lambda job: f"job {job_id} still {job.state} after {timeout:.0f}s",
    )


def cancel(job_id: str) -> bool:
    """Cancel a job that is not final yet; returns whether it was canceled.

    A job already submitted is canceled locally (no further polls, no download); the
    provider documents no cancel endpoint, so its generation may still be billed.
    Raises :class:`JobNotFound`.
    """
    get_job(job_id)
    return pipeline.cancel(get_engine(), job_id)  # it logs the transition


def resubmit(job_id: str) -> Job:
    """Submit a ``submit_unknown`` job again: the operator's decision, which may pay twice.

    A job of a budgeted batch first reserves the second submission's cost, so that the
    batch's billed and possibly billed spend stays within its budget. Raises
    :class:`~worker.job.submit.SubmitRefused` for a job in another state, or when the
    batch's budget has no room.
    """
    from worker.batch.tracker import BatchTracker

    engine = get_engine()
    job = get_job(job_id)
    if job.state is not JobState.SUBMIT_UNKNOWN:
        return pipeline.resubmit(engine, job_id)  # refuses it, saying why
    tracker = BatchTracker(engine)
    reserved = tracker.reserve_resubmission(job)
    try:
        return pipeline.resubmit(engine, job_id)
    except SubmitRefused:
        tracker.unreserve_resubmission(job, reserved)
        raise
