"""An image job's own parts of the submit and download steps.

An image job runs through the same steps as a clip (:mod:`worker.job.submit` claims, takes
the slot and the gate, and reads the POST's failures by the same rules), but its POST is
synchronous and names no task: the reply holds the urls of the images, already billed.
So the reply is recorded at once (:data:`~worker.job.transitions.IMAGES_RECEIVED`, from
``submitting`` straight to ``generated``), the slot is given back (nothing generates any
more), and the download step stores each image (:func:`store_images`) through
:func:`worker.job.stills.save_image`: its real signature checked, hashed, committed whole,
with its manifest. The urls are the only record of what was paid for, and a retried
download needs them (there is no task to ask for fresh ones); they are signed, so the
store keeps them apart from the record (:meth:`~worker.job.store.JobStore.keep_image_urls`),
which holds only their number.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from pydantic import SecretStr

from worker.job.engine import Engine
from worker.job.record import Billing, Job, JobState
from worker.job.step import Outcome, log_transition, moved_on, release, stop
from worker.job.stills import save_image
from worker.job.transitions import IMAGES_RECEIVED
from worker.provider.client import ApiClient
from worker.render.image_request import ImageRequest
from worker.storage import StoredClip

__all__ = ["done_fields", "image_names", "record_images", "sender", "store_images"]

logger = logging.getLogger(__name__)

S = JobState


def sender(job: Job) -> Callable[[ApiClient, SecretStr], list[str]]:
    """The POST of the job's image request, for :func:`worker.job.calls.perform`."""
    body = ImageRequest.model_validate(job.request).to_body()
    return lambda client, key: client.generate_images(body, api_key=key, idempotency_key=job.id)


def record_images(engine: Engine, job: Job, claim: int, *, urls: list[str]) -> Outcome:
    """Record the images the POST of ``claim`` made; the job goes on to store them."""
    applied, _ = engine.store.apply(
        job.id,
        IMAGES_RECEIVED,
        where={"submit_claim": claim},
        set={"image_count": len(urls)},
        due=time.time() + engine.settings.step_grace_seconds,
    )
    if not applied:
        return _record_late(engine, job.id, urls=urls)
    # Kept once the claim's record holds: a late, earlier POST never overwrites them. The
    # download is sent after this returns, so it finds them.
    engine.store.keep_image_urls(job.id, urls)
    engine.limits.on_success(job.alias)
    release(engine, job)  # the images exist: nothing generates for this job any more
    log_transition(job, "generated", images=len(urls))
    return moved_on(job, S.GENERATED, image_count=len(urls), billing=Billing.BILLED)


def _record_late(engine: Engine, job_id: str, *, urls: list[str]) -> Outcome:
    """The job moved on while the POST was in flight: the images were still made and
    billed. A job that ended meanwhile (canceled, failed) keeps them; one that a later
    claim owns now (a failover took this one back) is told of them in the log."""
    job = engine.store.get(job_id)
    if job is None:
        logger.error("job %s expired; the provider made %d images for it", job_id, len(urls))
        return stop("job expired")
    if not job.is_final:
        logger.warning(
            "job %s is %s under a later claim, but an earlier POST made %d images for it; "
            "they may be billed", job_id, job.state, len(urls),
        )  # fmt: skip
        return stop(f"job is {job.state} under a later claim")
    applied, _ = engine.store.update_fields(
        job_id,
        states={job.state},
        where={"image_count": ""},
        set={"image_count": len(urls), "billing": Billing.BILLED.value},
    )
    if applied:
        engine.store.keep_image_urls(job_id, urls)
        logger.warning(
            "job %s is %s, but the provider made %d images for it; they are billed",
            job_id, job.state, len(urls),
        )  # fmt: skip
    return stop(f"job is {job.state}; image urls kept")


def image_names(job: Job) -> list[str]:
    """Where each image goes under the output: the job's name for one image, else the
    name with ``-1``, ``-2``... in the order of the reply."""
    name = job.output_name or job.id
    if job.image_count == 1:
        return [name]
    return [f"{name}-{i}" for i in range(1, job.image_count + 1)]


def store_images(
    engine: Engine, job: Job, urls: list[str], *, on_stored: Callable[[], None]
) -> list[StoredClip]:
    """Store every image of the job from its ``urls``, each with its manifest;
    ``on_stored`` after each.

    Raises what :func:`~worker.job.stills.save_image` raises; the caller decides."""
    settings = engine.settings
    names = image_names(job)
    stored = []
    for index, (url, name) in enumerate(zip(urls, names, strict=True), start=1):
        stored.append(save_image(
            engine.storage, url, name=name, client=engine.downloads,
            max_bytes=settings.download_max_bytes, allow_local=settings.allow_local_urls,
            overall_timeout=settings.download_timeout,
            manifest=_manifest(job, index=index, of=len(names)),
        ))  # fmt: skip
        on_stored()
    return stored


def _manifest(job: Job, *, index: int, of: int) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "kind": job.kind.value,
        "key": job.alias,
        "request": job.request,
        "image": index,
        "images": of,
        "estimated_cost_usd": job.cost,
        "times": job.times,
        **({"batch": job.batch.partition(":")[0]} if job.batch else {}),
        **({"output_name": job.output_name} if job.output_name else {}),
        **({"retake_of": job.retake_of} if job.retake_of else {}),
    }


def done_fields(stored: list[StoredClip]) -> dict[str, object]:
    """The record's fields of a stored image job: the first image as its output, and
    every image in ``outputs``."""
    outputs = [
        {**image.manifest_fields(), "path": str(image.path.resolve()) if image.path else None}
        for image in stored
    ]
    return {**stored[0].record_fields(), "outputs": json.dumps(outputs)}
