"""Delivering a generated clip: download it safely, mark the job done and notify.

The download re-fetches the task for a fresh url (never stored: it is signed), streams it
through :func:`worker.provider.download.stream_video` into the storage's sink, writes the
manifest, and heartbeats while bytes arrive so that a dead download is resumed by the
sweeper within about a minute.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from worker.errors import AccountFault, Deferred, PermanentError, StorageError, TransientError
from worker.job import calls, images
from worker.job.engine import Engine
from worker.job.notify import notify_final
from worker.job.record import Job, JobKind, JobState
from worker.job.redeliver import REFUSED_SINCE, retry_delivery_later
from worker.job.step import (
    Outcome,
    again,
    claim_number,
    fail,
    load,
    log_transition,
    moved_on,
    stop,
    transient,
)
from worker.job.transitions import DONE, DOWNLOAD_STARTED
from worker.provider.download import UrlExpired, stream_video
from worker.storage import StoredClip

__all__ = ["download"]

logger = logging.getLogger(__name__)

S = JobState
HEARTBEAT_EVERY = 5.0  # a running download moves its due time this often ...
HEARTBEAT_GRACE = 15.0  # ... this far ahead


class Superseded(Exception):
    """A later download message claimed the job: this one stops without a side effect."""


def download(
    engine: Engine, job_id: str, *, seq: int, attempt: int = 0, url: str | None = None
) -> Outcome:
    """Stream the clip safely into the output, from a fresh url.

    ``url`` is one the caller has just read from the provider (a verified webhook): it is
    used as is, so the job costs no second GET. Otherwise, and on any retry, the task is
    fetched again for a fresh url (a signed url is never stored).
    """
    job = load(engine, job_id, seq, "download")
    if isinstance(job, Outcome):
        return job
    claim = claim_number(seq, attempt)
    applied, _ = engine.store.apply(
        job_id,
        DOWNLOAD_STARTED,
        where={"seq": seq},
        below={"download_claim": claim},
        set={"download_claim": claim},
        due=time.time() + HEARTBEAT_GRACE,
    )
    if not applied:
        return stop("download claimed by a later message")
    log_transition(job, "downloading")
    if job.kind is JobKind.IMAGE:
        stills = _transfer_images(engine, job, claim, attempt=attempt)
        if isinstance(stills, Outcome):
            return stills
        return _done(engine, job, claim, images.done_fields(stills), stills[0],
                     images=len(stills))  # fmt: skip
    stored = _transfer(engine, job, claim, url=url, attempt=attempt)
    if isinstance(stored, Outcome):
        return stored
    return _done(engine, job, claim, stored.record_fields(), stored)


def _transfer(
    engine: Engine, job: Job, claim: int, *, url: str | None, attempt: int
) -> StoredClip | Outcome:
    """Fetch the clip into the output, with its manifest; an Outcome when it did not."""
    settings = engine.settings
    name = job.output_name or job.id
    started = time.time()
    heartbeat = _Heartbeat(engine, job.id, claim)
    try:
        if url is None:
            # A retry always re-fetches: an outage of the provider then shows at its gate.
            url = calls.call(engine, job, calls.read_task(job.remote_task_id or "")).url
        if not url:
            return fail(engine, job, "unexpected_response", "the succeeded task has no url")
        # The seam to the output (worker/storage/): a sink that shows the clip only once
        # committed; any exception here (a refusal, Superseded) discards what it took.
        with engine.storage.open_clip(name) as sink:
            got = stream_video(url, sink, client=engine.downloads,
                               max_bytes=settings.download_max_bytes,
                               allow_local=settings.allow_local_urls,
                               overall_timeout=settings.download_timeout,
                               on_progress=heartbeat)  # fmt: skip
            result = sink.commit(sha256=got.sha256, seconds=got.seconds)
        manifest = _manifest(job, result, seconds=time.time() - started)
        engine.storage.save_manifest(name, manifest)
    except Superseded:
        return stop("a later download took over")
    except Deferred as exc:
        # The provider is down, or the key paused or busy: the clip waits at the provider.
        wait = min(exc.seconds, settings.poll_interval_max)
        return _later(engine, job, claim, wait, attempt=attempt)
    except AccountFault:
        return _later(engine, job, claim, settings.poll_interval_max, attempt=attempt)
    except StorageError as exc:
        return retry_delivery_later(engine, job, exc, claim=claim)
    except UrlExpired as exc:
        # The signed url expired: the next attempt re-fetches the task for a fresh one.
        # Attempts spent waiting out an outage do not count against the clip.
        if attempt >= 3 and not engine.limits.provider_unwell(job.alias):
            return fail(engine, job, exc.code, str(exc))
        return again(0.2, attempt=attempt + 1)
    except TransientError as exc:
        return transient(engine, job, exc, attempt)
    except PermanentError as exc:
        return fail(engine, job, exc.code, str(exc))
    return result


def _transfer_images(
    engine: Engine, job: Job, claim: int, *, attempt: int
) -> list[StoredClip] | Outcome:
    """Store the job's images (:mod:`worker.job.images`); an Outcome when they were not.
    Their urls are all there is: one that expired cannot be asked for again."""
    urls = engine.store.image_urls([job.id])[0]
    if not urls or len(urls) != job.image_count:  # lost: nothing to fetch them again from
        return fail(engine, job, "unexpected_response", "the image job has no image urls")
    heartbeat = _Heartbeat(engine, job.id, claim)
    try:
        return images.store_images(engine, job, urls, on_stored=lambda: heartbeat(0))
    except Superseded:
        return stop("a later download took over")
    except StorageError as exc:
        return retry_delivery_later(engine, job, exc, claim=claim)
    except TransientError as exc:
        return transient(engine, job, exc, attempt)
    except PermanentError as exc:  # an expired url, an unsafe one, not an image
        return fail(engine, job, exc.code, str(exc))


def _later(engine: Engine, job: Job, claim: int, wait: float, *, attempt: int) -> Outcome:
    """Try the download again after ``wait``, with the job due then (not failed)."""
    engine.store.update_fields(
        job.id,
        states={S.DOWNLOADING},
        where={"download_claim": claim},
        due=time.time() + wait + HEARTBEAT_GRACE,
    )
    return again(wait, attempt=attempt)


def _done(
    engine: Engine,
    job: Job,
    claim: int,
    fields: dict[str, object],
    result: StoredClip,
    **details: object,
) -> Outcome:
    """Mark the job done with ``fields`` (the stored output's), unless a later download
    claimed it meanwhile, and notify."""
    job_id = job.id
    # The output and its manifest are in place: the job is done, in the same change.
    done, _ = engine.store.apply(
        job_id, DONE, where={"download_claim": claim}, set={**fields, **_CLEARED_STORAGE_ERROR}
    )
    if not done:
        return stop("a later download took over")
    log_transition(job, "done", bytes=result.size, seconds=f"{result.seconds:.2f}",
                   output=result.uri, **details)  # fmt: skip
    notify_final(engine, job_id)
    return moved_on(job, S.DONE)


class _Heartbeat:
    """Keeps a running download's step due in the near future while bytes arrive.

    A download may take minutes, but a dead one should be noticed in about a minute: the
    sweeper resumes the job once the heartbeat stops moving its due time.
    """

    def __init__(self, engine: Engine, job_id: str, claim: int) -> None:
        self.engine, self.job_id, self.claim = engine, job_id, claim
        self.last = time.monotonic()

    def __call__(self, size: int) -> None:
        now = time.monotonic()
        if now - self.last < HEARTBEAT_EVERY:
            return
        self.last = now
        alive, _ = self.engine.store.update_fields(
            self.job_id,
            states={S.DOWNLOADING},
            where={"download_claim": self.claim},
            due=time.time() + HEARTBEAT_GRACE,
        )
        if not alive:
            raise Superseded


# A delivery retried after a storage error succeeded: the error is history, not state.
_CLEARED_STORAGE_ERROR = {"error_code": "", "error_message": "", REFUSED_SINCE: ""}


def _manifest(job: Job, clip: StoredClip, *, seconds: float) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "key": job.alias,
        "request": job.request,
        "remote_task_id": job.remote_task_id,
        "uri": clip.uri,
        "size": clip.size,
        "sha256": clip.sha256,
        "etag": clip.etag,
        "estimated_cost_usd": job.cost,
        "actual_cost_usd": job.actual_cost,
        "times": {**job.times, "download_seconds": round(seconds, 3)},
        "polls": job.poll_count,
        # Where it was filed and why: a batch's naming template, its line; a retake's original.
        **({"batch": job.batch.partition(":")[0]} if job.batch else {}),
        **({"output_name": job.output_name} if job.output_name else {}),
        **({"output_name_template": job.output_template} if job.output_template else {}),
        **({"retake_of": job.retake_of} if job.retake_of else {}),
    }
