"""Single jobs for Django, Flask, scripts and the CLI: enqueue, inspect, wait, cancel.

Every enqueue follows the one protocol of :mod:`worker.job.enqueue`: the record is written
pending, its first step is sent (:func:`worker.job.advance.advance`), then it is
confirmed. The step is decided from the record as written, never read back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from worker.api.checks import CheckedRender, check_render
from worker.errors import InvalidRequest
from worker.infra.waiting import wait_until_final
from worker.job import pipeline
from worker.job.advance import advance
from worker.job.engine import Engine, get_engine
from worker.job.enqueue import NewJob, enqueue_jobs, let_go, new_job, write_pending
from worker.job.record import Job, JobKind, JobState, new_job_id
from worker.job.submit import SubmitRefused
from worker.render.image_request import ImageRequest
from worker.render.pricing import estimate_cost
from worker.render.request import RenderRequest

__all__ = [
    "JobNotFound",
    "cancel",
    "clip_url",
    "enqueue_checked",
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
    request: RenderRequest | ImageRequest | Mapping[str, Any],
    *,
    key: str = "default",
    on_done: str | None = None,
    check_on_done: bool = False,
) -> str:
    """Validate a render request, record the job and enqueue it; return the job id at once.

    A request naming an image model (``{"model": "grok-imagine-image", "prompt": ...,
    "n": 2, "size": "1024x1024"}``) makes an image job: its stills are stored as a clip
    is, each checked by its signature and hashed, and listed in the job's ``outputs``.

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
    return enqueue_checked(
        check_render(request, key=key, on_done=on_done, check_on_done=check_on_done)
    )


def enqueue_checked(checked: CheckedRender) -> str:
    """:func:`enqueue_render` for a request :func:`~worker.api.checks.check_render`
    already checked: nothing is checked or read again."""
    engine = get_engine()
    new = _new_render(engine, checked, on_done=checked.on_done)
    enqueue_jobs(engine, [new], _first_step(engine, new, checked))
    logger.info(
        "job %s key=%s state=queued model=%s", new.id, checked.key, checked.request.model,
        extra={"job_id": new.id, "key": checked.key, "state": "queued"},
    )  # fmt: skip
    return new.id


def _new_render(
    engine: Engine,
    checked: CheckedRender,
    *,
    on_done: str | None,
    extra: Mapping[str, str] | None = None,
) -> NewJob:
    request = checked.request
    if checked.kind is JobKind.IMAGE:  # a clip's record says nothing: every older one is one
        extra = {**(extra or {}), "kind": checked.kind.value}
    return new_job(
        engine, new_job_id(), request=request.model_dump(mode="json"), alias=checked.key,
        cost=estimate_cost(request), on_done=on_done, extra=extra,
    )  # fmt: skip


def _first_step(engine: Engine, new: NewJob, checked: CheckedRender) -> Callable[[], None]:
    """Send the new job's first step, decided from the record as written."""

    def send() -> None:
        advance(engine, new.job(), uploads=checked.uploads)

    return send


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
    checked = check_render(data, key=old.alias)
    engine = get_engine()
    new = None
    if old.batch and isinstance(checked.request, RenderRequest):  # a batch makes no stills
        new = retake_in_batch(BatchTracker(engine), old, checked.request)
    if new is None:  # on its own (or its batch expired): the producer's on_done again
        new = _new_render(engine, checked, on_done=old.on_done, extra={"retake_of": old.id})
        write_pending(engine, [new])
    engine.store.add_retake(old.id, new.id)
    let_go(engine, [new], _first_step(engine, new, checked))
    logger.info("job %s key=%s state=queued retakes %s", new.id, old.alias, old.id,
                extra={"job_id": new.id, "key": old.alias, "state": "queued"})  # fmt: skip
    return new.id


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
