"""The job's state machine, declared once: its states, the moves between them, the steps
still to run from each state, and which step acts in which states.

States are one-way::

    queued -> waiting_for_slot -> submitting -> submitted -> running -> generated
           -> downloading -> done            (or failed / canceled from any non-final state)
            (ambiguous reply) submitting -> submit_unknown -> submitted (its task found)
            (a record that went back in time) queued, waiting_for_slot -> submit_unknown
    an image job: queued -> waiting_for_slot -> submitting -> generated -> downloading -> done
    a storyboard's clip: waiting_for_input -> queued (its stills done) or canceled (not)

``submit_unknown`` is the ambiguous submission: the POST may have reached the provider
(its reply was lost), so the task may exist and be billed. Only an operator's
``relaydance resubmit`` sends such a job back to ``waiting_for_slot``; a 429 sends a
``submitting`` job back too (nothing was created).

A job is of a :class:`JobKind`: a clip (``video``) or stills (``image``). An image POST
is synchronous: its reply holds the images, so an image job goes from ``submitting``
straight to ``generated`` (:data:`IMAGE_PLAN` has no poll), and the download stores them.

``waiting_for_input`` is a storyboard's clip waiting for the image jobs whose stills are
its first reference images (:mod:`worker.job.inputs`): no step acts on it and it holds no
slot; it is queued once they are done, and canceled unbilled when one is not.

The steps load a job only in the states they own (:data:`STEP_STATES`);
:func:`worker.job.advance.advance` sends the first of :func:`steps_from` the job's state.
Each move is a named transition (:mod:`worker.job.transitions`), and the job store
applies nothing else. The named sets below answer the questions several modules ask of
a state ("is it final?", "may its task be live at the provider?"); the Lua scripts get
the final states from here too. Nothing here reads Redis or Celery.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

__all__ = [
    "ALL_STATES",
    "AT_PROVIDER",
    "COUNTED_AT_PROVIDER",
    "FINAL_STATES",
    "FINAL_STATES_LUA",
    "HOLDS_SLOT",
    "IMAGE_PLAN",
    "IN_LINE",
    "LIVE_STATES",
    "PLAN",
    "REMOTE_MAY_BE_LIVE",
    "STEP_STATES",
    "SUBMISSION_IN_DOUBT",
    "TASK_MAY_EXIST",
    "WEBHOOK_MOVABLE",
    "Billing",
    "JobKind",
    "JobState",
    "is_final",
    "lua_set",
    "steps_from",
]


class JobState(StrEnum):
    """Where a job is; the order of declaration is the order of progress."""

    WAITING_FOR_INPUT = "waiting_for_input"
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


class JobKind(StrEnum):
    """What a job makes: a clip (the default, and every record written before kinds), or
    stills from the synchronous image endpoint."""

    VIDEO = "video"
    IMAGE = "image"


FINAL_STATES = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELED})
ALL_STATES = frozenset(JobState)
# Not final: a step, a webhook or the operator may still move the job.
LIVE_STATES = ALL_STATES - FINAL_STATES


def is_final(state: JobState) -> bool:
    """Whether ``state`` is done, failed or canceled: nothing moves the job any more."""
    return state in FINAL_STATES


def lua_set(states: Iterable[JobState]) -> str:
    """A Lua table literal for ``states`` (``{done=true, ...}``), to test membership in."""
    return "{" + ", ".join(f"{s.value}=true" for s in sorted(states)) + "}"


FINAL_STATES_LUA = lua_set(FINAL_STATES)


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

# Waiting for their POST: in line for a slot, or holding one not yet used.
IN_LINE = frozenset({S.QUEUED, S.WAITING_FOR_SLOT})
# A POST may have left and its reply been lost: a task may exist that the job never
# recorded (a webhook naming it may be adopted).
SUBMISSION_IN_DOUBT = frozenset({S.SUBMITTING, S.SUBMIT_UNKNOWN})
# The recorded task is generating at the provider: the poll step asks about it.
AT_PROVIDER = frozenset({S.SUBMITTED, S.RUNNING})
# The provider's task exists or may (a POST in flight, an unknown submission, a task
# generating): canceling does not stop it, and it counts against the key until final.
REMOTE_MAY_BE_LIVE = SUBMISSION_IN_DOUBT | AT_PROVIDER
# A task exists or may, from the POST on, including a finished clip not yet stored: a
# job canceled in these states may have been billed (the jobs page warns so).
TASK_MAY_EXIST = REMOTE_MAY_BE_LIVE | {S.GENERATED, S.DOWNLOADING}
# A verified webhook of the job's recorded task can still move it (the receiver queues
# the re-fetch only for these, or for a job that may own an orphaned submission).
WEBHOOK_MOVABLE = frozenset({S.SUBMITTING}) | AT_PROVIDER
# The job holds its concurrency slot for as long as it is in these (``submit_unknown``
# and ``canceled`` only for a while: see worker.job.slots).
HOLDS_SLOT = IN_LINE | {S.SUBMITTING} | AT_PROVIDER
# Other holders of a key that the provider counted when it refused a POST with a 429:
# their task exists or may, and a canceled one's task runs on. Jobs still submitting
# are left out: their POST may not have reached it yet.
COUNTED_AT_PROVIDER = frozenset({S.SUBMIT_UNKNOWN, S.CANCELED}) | AT_PROVIDER

# The steps still to run from each state, in order (the download finishes the job itself).
PLAN: dict[JobState, tuple[str, ...]] = {
    S.QUEUED: ("prepare", "submit", "poll", "download"),
    # A clip that waited past its inputs' trust comes back to prepare before its POST.
    S.WAITING_FOR_SLOT: ("prepare", "submit", "poll", "download"),
    S.SUBMITTING: ("submit", "poll", "download"),
    S.SUBMITTED: ("poll", "download"),
    S.RUNNING: ("poll", "download"),
    S.GENERATED: ("download",),
    S.DOWNLOADING: ("download",),
}

# An image job's plan: its POST's reply holds the images, so no poll. No prepare either:
# an image request names no local files.
IMAGE_PLAN: dict[JobState, tuple[str, ...]] = {
    S.QUEUED: ("submit", "download"),
    S.WAITING_FOR_SLOT: ("submit", "download"),
    S.SUBMITTING: ("submit", "download"),
    S.GENERATED: ("download",),
    S.DOWNLOADING: ("download",),
}
_PLANS = {JobKind.VIDEO: PLAN, JobKind.IMAGE: IMAGE_PLAN}

# The states each step acts in; a message that finds its job elsewhere does nothing.
STEP_STATES: dict[str, frozenset[JobState]] = {
    "prepare": IN_LINE,
    "submit": frozenset({S.QUEUED, S.WAITING_FOR_SLOT, S.SUBMITTING}),
    "poll": AT_PROVIDER,
    "download": frozenset({S.GENERATED, S.DOWNLOADING}),
}


def steps_from(
    state: JobState, *, uploads: bool = True, kind: JobKind = JobKind.VIDEO
) -> list[str]:
    """The steps still to run from ``state`` for a job of ``kind``: with no url to make
    (``uploads``: local files, a still to upload again), no prepare."""
    steps = list(_PLANS[kind].get(state, ()))
    if steps[:1] == ["prepare"] and not uploads:
        steps = steps[1:]  # nothing to upload: skip a task
    return steps
