"""A storyboard's clip waiting for its stills: moved on when they are done, canceled when not.

A batch writes a clip whose line has ``refs`` in ``waiting_for_input``, with the ids of
the image jobs it waits for in ``waits_for`` (in the order of its refs), and each of those
image jobs names its dependants in ``feeds``. :func:`settle_waiting` decides a waiting
clip from its stills' records, whoever asks:

- every still ``done``: :data:`~worker.job.transitions.INPUT_READY` puts the names of
  their images (each still's in order, :func:`refs`: their urls are signed, and go only
  in the body the submit step sends, :mod:`worker.job.still_refs`) first in the clip's
  ``images`` and queues it; its first step is sent (:func:`worker.job.advance.advance`);
- a still ``failed`` or ``canceled`` (or gone): :data:`~worker.job.transitions.INPUT_FAILED`
  cancels the clip with the reason, never sent, so never billed;
- otherwise it waits on: no step acts on it and it holds no slot.

It is asked when a still ends (:func:`worker.job.notify.notify_final`), after a batch
wrote the clip (a still may be done already: reused, or a resume), and by the sweeper
when the clip is overdue (a notice lost with a worker that stopped). Each move is a
compare-and-set from ``waiting_for_input``: asked twice, the clip moves once.

A clip made ready by its still's download is handed to that download's task
(:data:`READY_HERE`), which runs its first step in the same thread once the still is
stored, rather than sent behind every other step in the broker; anywhere else its step
is sent as a message. Either way the queued record's due time lets the sweeper resume a
clip whose step was lost with its worker.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from contextvars import ContextVar

from worker.job.advance import advance
from worker.job.engine import Engine
from worker.job.record import Job, JobState
from worker.job.transitions import INPUT_FAILED, INPUT_READY

__all__ = [
    "FEEDS", "READY_HERE", "REF", "WAITS_FOR", "dependants", "refs", "settle_waiting",
    "waiting_fields",
]  # fmt: skip

logger = logging.getLogger(__name__)

S = JobState
WAITS_FOR = "waits_for"  # on a clip: the image jobs it waits for, comma-separated, in order
FEEDS = "feeds"  # on an image job: the clips waiting for it, comma-separated
REF = "still://"  # a still's image named in a clip: a url's shape, never taken for a file
# Set by a still's download task: the clips its still made ready, whose first step that
# task runs itself; unset, a ready clip's step is sent.
READY_HERE: ContextVar[list[Job] | None] = ContextVar("ready_here", default=None)


def refs(still: Job) -> list[str]:
    """The names of the still's images (``still://<job id>/<n>``), in its reply's order."""
    return [f"{REF}{still.id}/{n}" for n in range(1, still.image_count + 1)]


def waiting_fields(stills: Sequence[str]) -> dict[str, str]:
    """The fields of a new clip that waits for the image jobs ``stills``."""
    return {"state": S.WAITING_FOR_INPUT.value, WAITS_FOR: ",".join(stills)}


def dependants(job: Job) -> list[str]:
    """The clips waiting for the image job ``job``."""
    return [job_id for job_id in job.extra.get(FEEDS, "").split(",") if job_id]


def settle_waiting(engine: Engine, job_id: str) -> str:
    """Move a waiting clip on from its stills' records: ``ready``, ``canceled``,
    ``waiting``, or ``""`` (not waiting, or not yet confirmed by its producer)."""
    job = engine.store.get(job_id)
    if job is None or job.state is not S.WAITING_FOR_INPUT or job.enqueue_pending:
        return ""
    ids = [still for still in job.extra.get(WAITS_FOR, "").split(",") if still]
    stills = engine.store.get_many(ids) if ids else []
    for still_id, still in zip(ids, stills, strict=True):
        if still is None or still.state in (S.FAILED, S.CANCELED):
            return _cancel(engine, job, still_id, "expired" if still is None else still.state)
    if any(still is None or still.state is not S.DONE for still in stills):
        return "waiting"
    return _ready(engine, job, [still for still in stills if still])


def _ready(engine: Engine, job: Job, stills: list[Job]) -> str:
    names = [ref for still in stills for ref in refs(still)]
    request = {**job.request, "images": [*names, *job.request.get("images", ())]}
    # Their urls are sent while trusted (the earliest reply's); past that, the clip's
    # prepare uploads the stored stills (worker.job.prepare).
    replied = min((still.times.get("generated", still.updated_at) for still in stills),
                  default=None)  # fmt: skip
    until = "" if replied is None else replied + engine.settings.input_url_trust_seconds
    applied, _ = engine.store.apply(
        job.id, INPUT_READY, set={"request": json.dumps(request, sort_keys=True),
                                  "inputs_until": until},
        due=time.time() + engine.settings.step_grace_seconds,
    )  # fmt: skip
    if not applied:
        return ""
    logger.info("job %s: its %d stills are done; queued", job.id, len(names),
                extra={"job_id": job.id, "state": "queued"})  # fmt: skip
    ready, here = engine.store.get(job.id), READY_HERE.get()
    if here is not None and ready is not None:
        here.append(ready)
    else:
        advance(engine, ready)
    return "ready"


def _cancel(engine: Engine, job: Job, still_id: str, state: str) -> str:
    reason = f"its still {still_id} {state}; the clip was never sent"
    applied, _ = engine.store.apply(job.id, INPUT_FAILED, set={"error_message": reason})
    if not applied:
        return ""
    logger.warning("job %s canceled: %s", job.id, reason,
                   extra={"job_id": job.id, "state": "canceled"})  # fmt: skip
    return "canceled"
