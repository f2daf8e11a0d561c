"""The urls a job needs that its record never holds: they are signed, or may be.

An image job's reply names its stills by signed urls; a clip's prepare step uploads its
local files and (past their trust) its stills, and the provider's upload answers an url
no document says is unsigned. Each is kept in a key of its own, beside the record and
expiring a retention period after it was written, read only by the step that sends it
(the still's download, the clip's submit, which puts it in the provider's body). So a job
record, a listing, Flower or a log line never shows one.

- ``rd:urls:<job>``: an image job's urls, in its reply's order;
- ``rd:media:<job>``: a clip's uploads, source (a local path, ``still://<job>/<n>``) ->
  url; the record names the sources made (``uploaded``), never their urls.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import redis

from worker.job.record import PREFIX, Job

__all__ = ["UrlKeys"]


class UrlKeys:
    """The job store's keys of urls (:class:`~worker.job.store.JobStore` is one)."""

    _redis: redis.Redis
    _retention: int

    def keep_image_urls(self, job_id: str, urls: Sequence[str]) -> None:
        """Hold an image job's urls (signed: never in its record) in their own key, for
        its download and the clips made from it; it expires a retention period on."""
        self._redis.set(f"{PREFIX}:urls:{job_id}", json.dumps(list(urls)), ex=self._retention)

    def image_urls(self, job_ids: Sequence[str]) -> list[list[str] | None]:
        """The urls each image job's POST named (None where gone), in one round trip."""
        raw = self._redis.mget([f"{PREFIX}:urls:{j}" for j in job_ids]) if job_ids else []
        return [None if value is None else json.loads(value) for value in raw]

    def keep_upload(self, job_id: str, source: str, url: str) -> None:
        """Hold the url an upload of the clip's ``source`` answered, a retention period."""
        key = f"{PREFIX}:media:{job_id}"
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(key, source, url)
        pipe.expire(key, self._retention)
        pipe.execute()

    def uploads(self, job: Job) -> dict[str, str]:
        """The urls to send for the clip's uploaded sources (those its record names as
        ``uploaded``; a record written before kept them in ``media_urls``)."""
        if not job.uploaded:
            return dict(job.media_urls)
        kept: dict[str, str] = self._redis.hgetall(f"{PREFIX}:media:{job.id}")  # type: ignore[assignment]
        return {**job.media_urls, **{s: kept[s] for s in job.uploaded if s in kept}}
