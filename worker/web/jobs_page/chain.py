"""A storyboard's chain on a job's page: the stills a clip is made from, the clips made from
a still.

A clip's record names the image jobs it waits for (``waits_for``, in the order of its refs)
and a still's names the clips made from it (``feeds``), as :mod:`worker.job.inputs` writes
them. The page reads those jobs in one round trip and shows each as a link to its own page,
with its state and prompt; a stored still (or clip) as a small picture served the way the
job's own output is (:func:`~worker.web.jobs_page.media.stored_media`): through the page's
media route, or a presigned URL of the bucket. The provider's URL of a still is never shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from worker.job.engine import Engine
from worker.job.inputs import FEEDS, WAITS_FOR
from worker.job.record import JOB_ID, Job, JobState
from worker.web.jobs_page.media import MediaKind, stored_media

__all__ = ["Chain", "ChainLink", "job_chain"]

_MAX_LINKS = 24  # a still feeding more clips than this lists the first ones
_EXCERPT = 80


@dataclass(frozen=True)
class ChainLink:
    """Another job of the chain, as the page shows it."""

    job_id: str
    linkable: bool  # a real job id (a placeholder, such as a still never claimed, is not)
    state: str
    excerpt: str
    kind: MediaKind = "none"
    src: str | None = None  # under the page's root, or a presigned bucket URL


@dataclass(frozen=True)
class Chain:
    """The stills a job is made from, and the clips made from it."""

    made_from: list[ChainLink] = field(default_factory=list)
    made_into: list[ChainLink] = field(default_factory=list)

    @property
    def media_origin(self) -> str:
        """The origin of the first picture served from elsewhere (a bucket), or ``""``."""
        remote = next((x.src for x in self.made_from + self.made_into
                       if x.src and "://" in x.src), None)  # fmt: skip
        if remote is None:
            return ""
        parts = urlsplit(remote)
        return f"{parts.scheme}://{parts.netloc}"


def _ids(value: str) -> list[str]:
    return [job_id for job_id in value.split(",") if job_id][:_MAX_LINKS]


def _excerpt(prompt: object) -> str:
    flat = " ".join(str(prompt or "").split())
    return flat if len(flat) <= _EXCERPT else flat[: _EXCERPT - 1] + "…"


def _link(engine: Engine, job_id: str, other: Job | None, *, root: str) -> ChainLink:
    linkable = JOB_ID.fullmatch(job_id) is not None
    if other is None:
        return ChainLink(job_id, linkable, "unknown" if linkable else "never made", "")
    excerpt = _excerpt(other.request.get("prompt"))
    if other.state is not JobState.DONE:
        return ChainLink(job_id, linkable, other.state.value, excerpt)
    kind, src = stored_media(engine, job_id, other.output_path, other.output_uri, root=root)
    return ChainLink(job_id, linkable, other.state.value, excerpt, kind, src)


def job_chain(engine: Engine, job: Job, *, root: str) -> Chain:
    """The job's chain: the stills it waits for or was made from, and the clips it feeds."""
    stills, clips = _ids(job.extra.get(WAITS_FOR, "")), _ids(job.extra.get(FEEDS, ""))
    wanted = stills + clips
    if not wanted:
        return Chain()
    readable = [job_id for job_id in wanted if JOB_ID.fullmatch(job_id)]
    found = dict(zip(readable, engine.store.get_many(readable), strict=True)) if readable else {}
    links = [_link(engine, job_id, found.get(job_id), root=root) for job_id in wanted]
    return Chain(links[: len(stills)], links[len(stills) :])
