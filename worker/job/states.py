"""The job's state machine, declared once: its states, the moves between them, the steps
still to run from each state, and which step acts in which states.

States are one-way::

    queued -> waiting_for_slot -> submitting -> submitted -> running -> generated
           -> downloading -> done            (or failed / canceled from any non-final state)
            (ambiguous reply) submitting -> submit_unknown -> submitted (its task found)
            (a record that went back in time) queued, waiting_for_slot -> submit_unknown

``submit_unknown`` is the ambiguous submission: the POST may have reached the provider
(its reply was lost), so the task may exist and be billed. Only an operator's
``relaydance resubmit`` sends such a job back to ``waiting_for_slot``; a 429 sends a
``submitting`` job back too (nothing was created).

The steps load a job only in the states they own (:data:`STEP_STATES`); the canvas sends
the chain of :func:`steps_from` the job's state; the job store refuses a change of state
this table does not allow (:func:`check_move`). Nothing here reads Redis or Celery.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

__all__ = [
    "FINAL_STATES",
    "MOVES",
    "PLAN",
    "STEP_STATES",
    "Billing",
    "JobState",
    "check_move",
    "steps_from",
]


class JobState(StrEnum):
    """Where a job is; the order of declaration is the order of progress."""

    QUEUED = "queued"
    WAITING_FOR_SLOT = "waiting_for_slot"
    SUBMITTING = "submitting"
    SUBMIT_UNKNOWN = "submit_unknown"
    SUBMITTED = "submitted"
    RUNNING = "running"
    GENERATED = "generated"
    DOWNLOADING = "downloading"
    DONE = "done"
    FAILED = "failed"
    CANCELED = "canceled"


FINAL_STATES = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELED})


class Billing(StrEnum):
    """What the provider may have charged for the job.

    ``none`` (nothing reached it), ``pending`` (a POST is in flight), ``unknown`` (it may
    have created a task), ``billed`` (it did) or ``not_billed`` (the generation failed).
    """

    NONE = "none"
    PENDING = "pending"
    UNKNOWN = "unknown"
    BILLED = "billed"
    NOT_BILLED = "not_billed"

    @property
    def refundable(self) -> bool:
        """Whether a reservation for the job may be given back: nothing was charged."""
        return self in (Billing.NONE, Billing.NOT_BILLED)


S = JobState
_ENDS = frozenset({S.FAILED, S.CANCELED})

# Every change of state a step may make (besides failing or canceling a live job).
MOVES: dict[JobState, frozenset[JobState]] = {
    # To submitted: an orphan's task adopted. To submit_unknown: the record went back in
    # time (a failover lost a claim), see worker.job.failover.
    S.QUEUED: frozenset({S.WAITING_FOR_SLOT, S.SUBMITTING, S.SUBMITTED, S.SUBMIT_UNKNOWN}),
    S.WAITING_FOR_SLOT: frozenset({S.SUBMITTING, S.SUBMITTED, S.SUBMIT_UNKNOWN}),
    S.SUBMITTING: frozenset({S.WAITING_FOR_SLOT, S.SUBMIT_UNKNOWN, S.SUBMITTED}),
    S.SUBMIT_UNKNOWN: frozenset({S.WAITING_FOR_SLOT, S.SUBMITTED}),
    S.SUBMITTED: frozenset({S.RUNNING, S.GENERATED}),
    S.RUNNING: frozenset({S.GENERATED}),
    S.GENERATED: frozenset({S.DOWNLOADING}),
    S.DOWNLOADING: frozenset({S.DONE}),
}

# The steps still to run from each state, in order (the download finishes the job itself).
PLAN: dict[JobState, tuple[str, ...]] = {
    S.QUEUED: ("prepare", "submit", "poll", "download"),
    S.WAITING_FOR_SLOT: ("submit", "poll", "download"),
    S.SUBMITTING: ("submit", "poll", "download"),
    S.SUBMITTED: ("poll", "download"),
    S.RUNNING: ("poll", "download"),
    S.GENERATED: ("download",),
    S.DOWNLOADING: ("download",),
}

# The states each step acts in; a message that finds its job elsewhere does nothing.
STEP_STATES: dict[str, frozenset[JobState]] = {
    "prepare": frozenset({S.QUEUED}),
    "submit": frozenset({S.QUEUED, S.WAITING_FOR_SLOT, S.SUBMITTING}),
    "poll": frozenset({S.SUBMITTED, S.RUNNING}),
    "download": frozenset({S.GENERATED, S.DOWNLOADING}),
    # A clip recorded as downloaded by an earlier version of the fleet, not yet done.
    "finish": frozenset({S.DOWNLOADING}),
}


def steps_from(state: JobState, *, uploads: bool = True, downloaded: bool = False) -> list[str]:
    """The steps still to run from ``state``: without local files to ``uploads``, no
    prepare; a clip already ``downloaded`` only needs finishing."""
    steps = list(PLAN.get(state, ()))
    if steps[:1] == ["prepare"] and not uploads:
        steps = steps[1:]  # nothing to upload: skip a task
    if state is S.DOWNLOADING and downloaded:
        steps = ["finish"]
    return steps


def check_move(states: Iterable[JobState] | None, to: JobState) -> None:
    """Refuse a step's change of state the machine does not allow (a programming error).

    ``states`` None is not a step's change: failing or canceling a live job, or setting
    a state by hand (tests, repairs).
    """
    if to in _ENDS or states is None:
        return  # any live job may fail or be canceled
    for state in states:
        if state is not to and to not in MOVES.get(state, frozenset()):
            raise ValueError(f"a job may not move from {state} to {to}")
