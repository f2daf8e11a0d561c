"""A delivery the output storage would not take: keep the paid clip's job, try again later.

The provider has generated (and billed) the clip; a bucket that refuses writes, a missing
bucket, a full disk or an outage is a problem of ours, and failing the job would throw the
spend away. So the job stays in ``downloading`` with the error on its record
(``error_code`` ``storage_refused`` or ``storage_unavailable``, the message naming the fix)
and its next attempt due in ``RELAYDANCE_STORAGE_RETRY_INTERVAL`` seconds; the sweeper
runs it then, and each attempt re-fetches the task for a fresh url. Once the storage takes
the clip the job finishes as usual. After ``RELAYDANCE_STORAGE_RETRY_SECONDS`` the job
fails with that error, its message naming the remote task to fetch the clip from by hand.
"""

from __future__ import annotations

import logging
import time

from worker.errors import StorageError
from worker.job.engine import Engine
from worker.job.record import Job, JobState
from worker.job.step import Outcome, fail, stop

__all__ = ["REFUSED_SINCE", "retry_delivery_later"]

logger = logging.getLogger(__name__)

REFUSED_SINCE = "storage_refused_at"  # the record's field: first refusal, epoch seconds


def retry_delivery_later(engine: Engine, job: Job, exc: StorageError, *, claim: int) -> Outcome:
    """Record the storage error on the job and leave its next attempt to the sweeper."""
    settings = engine.settings
    now = time.time()
    since = job.storage_refused_at or now
    if now - since >= settings.storage_retry_seconds:
        return fail(
            engine,
            job,
            exc.code,
            f"{exc}; gave up after {now - since:.0f} s. The clip was generated and is "
            f"still at the provider as task {job.remote_task_id}: fetch it from there "
            "while its url lives",
        )
    retry_in = settings.storage_retry_interval
    applied, _ = engine.store.update_fields(
        job.id,
        states={JobState.DOWNLOADING},
        where={"download_claim": claim},
        set={REFUSED_SINCE: repr(since), "error_code": exc.code, "error_message": str(exc)},
        due=now + retry_in,
    )
    if applied:
        logger.warning(
            "job %s key=%s the output %s refused the clip; delivery retried in %.0f s: %s",
            job.id, job.alias, engine.storage.where, retry_in, exc,
        )  # fmt: skip
    return stop(f"{exc.code}: delivery retried later")
