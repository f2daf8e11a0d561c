"""One job, as its page shows it: the timeline, the request, the money, the manifest, the clip,
and a storyboard's chain (:mod:`worker.web.jobs_page.chain`).

The request shown is the record's (which holds no key); URLs in it are shown without
their query string and user part, since a signed reference URL carries its grant there,
and very long values (inline data) are cut.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from worker.errors import StorageError
from worker.job.engine import Engine
from worker.job.record import Job, JobState
from worker.job.states import TASK_MAY_EXIST
from worker.job.transitions import CANCEL, RESUBMIT
from worker.web.jobs_page.chain import Chain, job_chain
from worker.web.jobs_page.media import IMAGE_SUFFIXES, clip_path, output_suffix

__all__ = ["CANCELABLE", "RESUBMITTABLE", "JobDetail", "job_detail", "redacted"]

# Any job not final may be canceled (as ``relaydance cancel`` does); once its task may
# exist at the provider, it may still be billed, which the confirmation says.
CANCELABLE = CANCEL.sources
REMOTE_MAY_LIVE = TASK_MAY_EXIST
# Only an ambiguous submission is sent again, and only as the operator's decision.
RESUBMITTABLE = RESUBMIT.sources
_MAX_VALUE = 300
_MAX_MANIFEST = 64 * 1024


@dataclass(frozen=True)
class Step:
    """One transition of the timeline."""

    state: str
    at: float
    after: float | None  # seconds since the previous step


@dataclass
class JobDetail:
    """Everything the job's page shows."""

    job: Job
    timeline: list[Step]
    request_json: str
    manifest: str | None
    clip_src: str | None  # a URL under the page's root, or a presigned bucket URL
    media_origin: str = ""  # the bucket's origin, for the page's media-src policy
    warnings: list[str] = field(default_factory=list)
    clip_download: str | None = None  # links that save the clip and its manifest
    manifest_download: str | None = None
    still: bool = False  # the stored file is an image (shown as one), not a clip
    chain: Chain = field(default_factory=Chain)  # a storyboard's stills and clips beside it

    @property
    def can_cancel(self) -> bool:
        """Whether the cancel button is offered."""
        return self.job.state in CANCELABLE

    @property
    def can_resubmit(self) -> bool:
        """Whether the resubmit button is offered."""
        return self.job.state in RESUBMITTABLE

    @property
    def can_retake(self) -> bool:
        """Whether the retake button is offered: any finished job may render again."""
        return self.job.is_final

    @property
    def remote_may_live(self) -> bool:
        """Whether a task may exist (and be billed) at the provider."""
        return self.job.state in REMOTE_MAY_LIVE


def redacted(value: Any) -> Any:
    """The value with URLs stripped of their query and user part, and long strings cut."""
    if isinstance(value, dict):
        return {k: redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(v) for v in value]
    if not isinstance(value, str):
        return value
    if value.startswith(("http://", "https://")):
        parts = urlsplit(value)
        host = parts.hostname or ""
        netloc = host + (f":{parts.port}" if parts.port else "")
        query = "(query hidden)" if parts.query else ""
        value = urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    if len(value) > _MAX_VALUE:
        return value[:_MAX_VALUE] + f"... ({len(value)} characters)"
    return value


def timeline(job: Job) -> list[Step]:
    """The job's transitions in time order, with the time each took."""
    steps: list[Step] = []
    for state, at in sorted(job.times.items(), key=lambda item: item[1]):
        after = at - steps[-1].at if steps else None
        steps.append(Step(state, at, after))
    return steps


def _manifest(engine: Engine, job: Job) -> str | None:
    """The manifest next to a local clip, pretty-printed; None when there is none."""
    if engine.settings.output_bucket() is not None:
        return None
    path = clip_path(engine.settings.output_dir, job.id, suffix=".json", recorded=job.output_path)
    if path is None:
        return None
    try:
        text = path.read_text(errors="replace")[:_MAX_MANIFEST]
        return json.dumps(redacted(json.loads(text)), indent=2, sort_keys=True)
    except (OSError, ValueError):
        return None


def job_detail(engine: Engine, job: Job, *, root: str, bucket_url: str | None) -> JobDetail:
    """The page's view of ``job``; ``bucket_url``: its presigned clip URL, in a bucket."""
    clip_src: str | None = None
    origin = ""
    suffix = output_suffix(job.output_uri or job.output_path)
    if job.state is JobState.DONE:
        if bucket_url:
            clip_src = bucket_url
            parts = urlsplit(bucket_url)
            origin = f"{parts.scheme}://{parts.netloc}"
        elif clip_path(engine.settings.output_dir, job.id, suffix=suffix,
                       recorded=job.output_path) is not None:  # fmt: skip
            clip_src = f"{root}/media/{job.id}{suffix}"
    request_json = json.dumps(redacted(job.request), indent=2, sort_keys=True)
    manifest = _manifest(engine, job)
    chain = job_chain(engine, job, root=root)
    detail = JobDetail(job, timeline(job), request_json, manifest, clip_src,
                       origin or chain.media_origin, still=suffix in IMAGE_SUFFIXES,
                       chain=chain)  # fmt: skip
    if job.state is JobState.DONE and clip_src is None:
        detail.warnings.append("the clip is not in the output directory any more")
    elif clip_src and bucket_url:
        detail.clip_download = bucket_url
        detail.manifest_download = _bucket_manifest_url(engine, job)
    elif clip_src:
        detail.clip_download = f"{root}/media/{job.id}{suffix}?download=1"
        if manifest is not None:
            detail.manifest_download = f"{root}/media/{job.id}.json?download=1"
    return detail


def _bucket_manifest_url(engine: Engine, job: Job) -> str | None:
    """A presigned URL of the manifest beside a clip in a bucket, or None."""
    uri = job.output_uri or ""
    suffix = output_suffix(uri)
    if not uri.endswith(suffix):
        return None
    try:
        return engine.storage.presigned_url(uri[: -len(suffix)] + ".json")
    except StorageError:
        return None
