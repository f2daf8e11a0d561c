"""What the page's buttons do (cancel, resubmit, retake), through the producer API
(``tasks``), as the CLI does.

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


def _cancel(job_id: str) -> bool:
    from worker.api import cancel

    return cancel(job_id)  # ``relaydance cancel``: frees its slot or place in line


def _resubmit(job_id: str) -> Job:
    from worker.api import resubmit
    from worker.job.submit import SubmitRefused

    try:
        return resubmit(job_id)  # ``relaydance resubmit``: only from submit_unknown
    except SubmitRefused as exc:
        raise ActionRefused(str(exc)) from None


def _retake(job_id: str, prompt: str | None) -> str:
    from worker.api import JobNotFound, retake
    from worker.errors import InvalidRequest

    try:
        return retake(job_id, prompt=prompt)  # ``relaydance retake``: a new take, linked
    except JobNotFound as exc:
        raise ActionRefused(str(exc)) from None
    except InvalidRequest as exc:
        raise ActionRefused("; ".join(f"{f}: {m}" for f, m in exc.problems)) from None


def _clip_url(job: Job) -> str | None:
    from worker.api import clip_url

    return clip_url(job)


@dataclass(frozen=True)
class Actions:
    """Cancel, resubmit, retake and the bucket URL of a clip; tests may pass their own."""

    cancel: Callable[[str], bool]
    resubmit: Callable[[str], Job]
    clip_url: Callable[[Job], str | None]
    retake: Callable[[str, str | None], str] = _retake


def producer_actions() -> Actions:
    """The producer API's cancel, resubmit, clip URL and retake."""
    return Actions(cancel=_cancel, resubmit=_resubmit, clip_url=_clip_url, retake=_retake)
