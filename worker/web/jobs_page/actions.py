"""What the page's buttons do, through the producer API (``tasks``), as the CLI does.

The page is an entry point, like the CLI: it may use the producer functions, imported
when first needed so that nothing below ``worker`` imports ``tasks`` at load time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from worker.job.record import Job

__all__ = ["ActionRefused", "Actions", "producer_actions"]


class ActionRefused(Exception):
    """The job is not in a state the action allows; the message says which and why."""


@dataclass(frozen=True)
class Actions:
    """Cancel, resubmit and the bucket URL of a clip; tests may pass their own."""

    cancel: Callable[[str], bool]
    resubmit: Callable[[str], Job]
    clip_url: Callable[[Job], str | None]


def _cancel(job_id: str) -> bool:
    from tasks import cancel

    return cancel(job_id)  # ``relaydance cancel``: frees its slot or place in line


def _resubmit(job_id: str) -> Job:
    from tasks import resubmit
    from worker.job.submit import SubmitRefused

    try:
        return resubmit(job_id)  # ``relaydance resubmit``: only from submit_unknown
    except SubmitRefused as exc:
        raise ActionRefused(str(exc)) from None


def _clip_url(job: Job) -> str | None:
    from tasks import clip_url

    return clip_url(job)


def producer_actions() -> Actions:
    """The producer API's cancel, resubmit and clip URL."""
    return Actions(cancel=_cancel, resubmit=_resubmit, clip_url=_clip_url)
