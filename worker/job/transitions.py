"""Every move of a job, named once: where it may start, where it ends, what it writes.

A call site names the move (``store.apply(job_id, SUBMIT_ACCEPTED, ...)``) and adds only
what it alone knows: the task id it was given, the claim it holds, when the job is due
next. The store (:meth:`worker.job.store.JobStore.apply`) refuses a transition that is not
declared here, and a narrowing (``only=``) outside its from-states. ``then`` is the step
the job runs next from the new state (the first of :data:`~worker.job.states.PLAN`), or
None when nothing runs until someone acts (the operator, a webhook, the sweeper).

A change that writes fields and moves no state (a claim, a due time, a late task id on a
final job) is not a transition: see :meth:`~worker.job.store.JobStore.update_fields`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeVar

from worker.job.states import (
    AT_PROVIDER,
    IN_LINE,
    LIVE_STATES,
    STEP_STATES,
    SUBMISSION_IN_DOUBT,
    Billing,
    JobState,
)

__all__ = [
    "ABANDON_UNSENT",
    "ADOPT_AFTER_RESUBMIT",
    "ADOPT_ORPHAN",
    "BACK_IN_TIME",
    "CANCEL",
    "DONE",
    "DOWNLOAD_STARTED",
    "FAIL",
    "GENERATED",
    "IMAGES_RECEIVED",
    "INPUT_FAILED",
    "INPUT_READY",
    "MOVES",
    "POLL_RUNNING",
    "REQUEUE",
    "RESUBMIT",
    "SUBMIT_ACCEPTED",
    "SUBMIT_AMBIGUOUS",
    "SUBMIT_RECORDED",
    "SUBMIT_STARTED",
    "TRANSITIONS",
    "WAIT_FOR_SLOT",
    "WEBHOOK_RUNNING",
    "Transition",
    "check",
]

S = JobState
V = TypeVar("V")


@dataclass(frozen=True, eq=False)  # one object per declared move: compared by identity
class Transition:
    """One named move: from any of ``sources`` to ``to``, writing ``sets`` and ``incr``."""

    name: str
    sources: frozenset[JobState]
    to: JobState
    sets: Mapping[str, object]
    incr: Mapping[str, int]
    then: str | None  # the step that runs next from ``to``

    def __str__(self) -> str:
        return self.name

    def fields(self, own: Mapping[str, V], extra: Mapping[str, V] | None) -> dict[str, V] | None:
        """``own`` (its ``sets`` or ``incr``) with a call's ``extra``, which may add fields
        but never write another value in one of its own: a programming error."""
        for key, value in (extra or {}).items():
            if key in own and own[key] != value:
                raise ValueError(f"{self.name} writes {key}={own[key]!r}; a call may not change it")
        merged = {**own, **(extra or {})}
        return merged or None


def _t(
    name: str,
    sources: Iterable[JobState],
    to: JobState,
    *,
    sets: Mapping[str, object] | None = None,
    incr: Mapping[str, int] | None = None,
    then: str | None = None,
) -> Transition:
    return Transition(
        name, frozenset(sources), to, MappingProxyType(dict(sets or {})),
        MappingProxyType(dict(incr or {})), then,
    )  # fmt: skip


_BILLED = {"billing": Billing.BILLED.value}
_UNBILLED = {"billing": Billing.NONE.value}
_NO_ERROR = {"error_code": "", "error_message": ""}

# -- the submission -----------------------------------------------------------------------
# The submit step claims the job: its POST is about to leave.
SUBMIT_STARTED = _t(
    "submit_started", STEP_STATES["submit"], S.SUBMITTING,
    sets={"billing": Billing.PENDING.value}, incr={"submit_attempts": 1}, then="submit",
)  # fmt: skip
# The job waits in its key's line (or off it); a claim it made is given up.
WAIT_FOR_SLOT = _t("wait_for_slot", STEP_STATES["submit"], S.WAITING_FOR_SLOT, then="prepare")
# The provider refused the POST and created nothing (429, the account, a claim no replica
# confirmed): back to the head of the line, the seq moved on.
REQUEUE = _t(
    "requeue", {S.SUBMITTING}, S.WAITING_FOR_SLOT, sets=_UNBILLED, incr={"seq": 1},
    then="prepare",
)  # fmt: skip
# The POST's reply named its task.
SUBMIT_ACCEPTED = _t("submit_accepted", {S.SUBMITTING}, S.SUBMITTED, sets=_BILLED, then="poll")
# The task id was recorded, but the change of state after it was lost.
SUBMIT_RECORDED = _t("submit_recorded", {S.SUBMITTING}, S.SUBMITTED, then="poll")
# The POST may have created a task (its reply was lost): never POST again blindly.
SUBMIT_AMBIGUOUS = _t(
    "submit_ambiguous", {S.SUBMITTING}, S.SUBMIT_UNKNOWN,
    sets={"billing": Billing.UNKNOWN.value, "error_code": "submit_unknown"},
)  # fmt: skip
# The record went back in time (a failover lost a claim or a reply): in doubt now.
BACK_IN_TIME = _t("back_in_time", IN_LINE | SUBMISSION_IN_DOUBT, S.SUBMIT_UNKNOWN)
# The operator's decision for an ambiguous submission: submit again, knowingly.
RESUBMIT = _t(
    "resubmit", {S.SUBMIT_UNKNOWN}, S.WAITING_FOR_SLOT, sets={**_UNBILLED, **_NO_ERROR},
    incr={"seq": 1, "orphans": 1}, then="prepare",
)  # fmt: skip
# A task of the job's orphaned submission (a webhook, a late reply) becomes its task.
ADOPT_ORPHAN = _t(
    "adopt_orphan", SUBMISSION_IN_DOUBT, S.SUBMITTED, sets={**_BILLED, **_NO_ERROR}, then="poll"
)
# The same, for a job resubmitted by the operator: it may be in line again meanwhile.
ADOPT_AFTER_RESUBMIT = _t(
    "adopt_after_resubmit", SUBMISSION_IN_DOUBT | IN_LINE, S.SUBMITTED,
    sets={**_BILLED, **_NO_ERROR}, then="poll",
)  # fmt: skip

# An image POST's reply holds its images (billed): nothing to poll, they are stored next.
# A reply that comes after the sweeper judged the job in doubt is still its own (the
# call site narrows to the claim that POSTed).
IMAGES_RECEIVED = _t(
    "images_received", SUBMISSION_IN_DOUBT, S.GENERATED, sets={**_BILLED, **_NO_ERROR},
    then="download",
)  # fmt: skip

# -- the generation -----------------------------------------------------------------------
# A poll found the task running (or still running).
POLL_RUNNING = _t("poll_running", AT_PROVIDER, S.RUNNING, then="poll")
# A verified webhook says the task started; a job already running is left as it is.
WEBHOOK_RUNNING = _t("webhook_running", {S.SUBMITTED}, S.RUNNING, then="poll")
# The provider says the clip is ready.
GENERATED = _t("generated", AT_PROVIDER, S.GENERATED, then="download")

# -- the delivery ---------------------------------------------------------------------------
# The download step claims the job.
DOWNLOAD_STARTED = _t("download_started", STEP_STATES["download"], S.DOWNLOADING, then="download")
# The clip and its manifest are stored.
DONE = _t("done", {S.DOWNLOADING}, S.DONE)

# -- a storyboard's clip ---------------------------------------------------------------------
# The stills it waits for are done: their urls are first in its images; it is in line now.
INPUT_READY = _t("input_ready", {S.WAITING_FOR_INPUT}, S.QUEUED, then="prepare")
# A still it waits for failed or was canceled: the clip ends unbilled, never sent.
INPUT_FAILED = _t(
    "input_failed", {S.WAITING_FOR_INPUT}, S.CANCELED,
    sets={**_UNBILLED, "error_code": "input_failed"},
)  # fmt: skip

# -- the ends -------------------------------------------------------------------------------
FAIL = _t("fail", LIVE_STATES, S.FAILED)
CANCEL = _t("cancel", LIVE_STATES, S.CANCELED)
# The producer's message never left: the job is canceled before any step sees it.
ABANDON_UNSENT = _t("abandon_unsent", {S.QUEUED, S.WAITING_FOR_INPUT}, S.CANCELED)

TRANSITIONS: Mapping[str, Transition] = MappingProxyType(
    {
        t.name: t
        for t in (
            SUBMIT_STARTED,
            WAIT_FOR_SLOT,
            REQUEUE,
            SUBMIT_ACCEPTED,
            SUBMIT_RECORDED,
            SUBMIT_AMBIGUOUS,
            BACK_IN_TIME,
            RESUBMIT,
            ADOPT_ORPHAN,
            ADOPT_AFTER_RESUBMIT,
            IMAGES_RECEIVED,
            INPUT_READY,
            INPUT_FAILED,
            POLL_RUNNING,
            WEBHOOK_RUNNING,
            GENERATED,
            DOWNLOAD_STARTED,
            DONE,
            FAIL,
            CANCEL,
            ABANDON_UNSENT,
        )
    }
)

# Every change of state the table allows, by from-state (a state to itself is no move).
MOVES: Mapping[JobState, frozenset[JobState]] = MappingProxyType(
    {
        state: frozenset(
            t.to for t in TRANSITIONS.values() if state in t.sources and t.to is not state
        )
        for state in JobState
    }
)


def check(transition: Transition, only: Iterable[JobState] | None = None) -> frozenset[JobState]:
    """The from-states ``transition`` applies in: all of its own, or ``only`` (the state a
    caller read, for a compare-and-set on it). Raises ValueError for a transition that is
    not declared, or a state it does not start from: a programming error."""
    if TRANSITIONS.get(transition.name) is not transition:
        raise ValueError(f"undeclared transition {transition.name!r}")
    if only is None:
        return transition.sources
    states = frozenset(only)
    if not states or not states <= transition.sources:
        illegal = ", ".join(sorted(states - transition.sources)) or "no state"
        raise ValueError(f"{transition.name} does not start from {illegal}")
    return states
