"""The steps of a render job: prepare (uploads), submit, poll, download (it finishes the job).

Each step is a plain function ``step(engine, job_id, *, seq, ...) -> Outcome`` that the thin
Celery tasks in ``tasks/`` call. A step loads the job record, checks that the message is
current (its ``seq`` matches the job's, and its claim is above the last one), changes the
record with a compare-and-set, and says what the task should do next: go on to the next
step (:func:`worker.job.advance.advance` sends it), stop quietly, or run again after a
countdown. A duplicate, late or stale message therefore finds the job past its step and
does nothing.

Submission, the step that spends money, and its policy for ambiguous failures live in
:mod:`worker.job.submit`; the uploads before it in :mod:`worker.job.prepare`; delivery in
:mod:`worker.job.deliver`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator

from worker.errors import AccountFault, Deferred, NotDurable, PermanentError, TransientError
from worker.job import calls
from worker.job.advance import advance, carry_on, plan_for
from worker.job.deliver import download
from worker.job.engine import Engine
from worker.job.failover import confirm_later
from worker.job.inputs import READY_HERE
from worker.job.notify import notify_final
from worker.job.prepare import prepare
from worker.job.record import Job, JobState
from worker.job.remote import apply_remote
from worker.job.states import LIVE_STATES, REMOTE_MAY_BE_LIVE, STEP_STATES
from worker.job.step import (
    Outcome,
    again,
    fail,
    first_poll_delay,
    load,
    log_transition,
    release,
    stop,
    transient,
)
from worker.job.submit import record_task, resubmit, submit
from worker.job.transitions import CANCEL

logger = logging.getLogger(__name__)

__all__ = [
    "Outcome",
    "cancel",
    "confirm_task",
    "download",
    "first_poll_delay",
    "poll",
    "prepare",
    "resubmit",
    "submit",
]

S = JobState


def poll(engine: Engine, job_id: str, *, seq: int, n: int = 0, attempt: int = 0) -> Outcome:
    """Ask the provider once how the task is doing; reschedule by countdown if not final."""
    live = STEP_STATES["poll"]
    job = load(engine, job_id, seq, "poll")
    if isinstance(job, Outcome):
        return job
    if job.poll_count != n:
        return stop(f"duplicate poll {n} (job at {job.poll_count})")
    now = time.time()
    if job.next_due is not None and now < job.next_due - 0.05:
        return again(job.next_due - now, n=n, attempt=attempt)
    if _past_deadline(engine, job, now=now):
        return fail(
            engine,
            job,
            "deadline_exceeded",
            f"not finished {engine.settings.poll_deadline_seconds:.0f}s after submission, "
            "outages not counted (RELAYDANCE_POLL_DEADLINE_SECONDS)",
        )
    try:
        gate = calls.admit(engine, job)
    except Deferred as exc:
        return _poll_later(engine, job, exc.seconds, n=n, attempt=attempt)
    # One call with an overall deadline: a poll not done by then lost its worker.
    applied, _ = engine.store.update_fields(
        job_id, states=live, where={"seq": seq, "poll_count": n}, incr={"poll_count": 1},
        set={"last_poll_at": now},
        due=now + engine.settings.http_call_deadline + engine.settings.sweep_grace_seconds,
    )  # fmt: skip
    if not applied:
        return stop("poll already claimed")
    try:
        task = calls.perform(
            engine,
            job,
            gate,
            lambda client, key: client.get_task(job.remote_task_id or "", api_key=key),
        )
    except AccountFault:
        # The key is paused (a revoked key cannot read): the task lives on; ask later.
        return _poll_later(engine, job, engine.settings.pause_probe_seconds, n=n + 1, attempt=0)
    except TransientError as exc:
        # A failed poll is just a poll: it comes again no later than the longest interval.
        retry = transient(engine, job, exc, attempt, cap=engine.settings.poll_interval_max, n=n + 1)
        if retry.action == "again":  # the retry is the next poll: due then, not at the grace
            engine.store.update_fields(job_id, states=live, due=time.time() + retry.countdown)
        return retry
    except PermanentError as exc:
        return fail(engine, job, exc.code, str(exc))
    return apply_remote(engine, job, task, polls_done=n + 1)


def _past_deadline(engine: Engine, job: Job, *, now: float) -> bool:
    """Whether the job's poll deadline has passed, not counting the time its provider was
    down or its key revoked (a job whose clip exists is never failed for an outage)."""
    submitted_at = job.times.get("submitted", job.created_at)
    deadline = engine.settings.poll_deadline_seconds
    if now - submitted_at <= deadline:
        return False
    outages = engine.limits.outage_seconds(job.alias, start=submitted_at, end=now)
    return now - submitted_at - outages > deadline


def _poll_later(engine: Engine, job: Job, wait: float, *, n: int, attempt: int) -> Outcome:
    """Poll again after ``wait`` (at most the longest poll interval: a pause may end sooner,
    and the gate costs nothing at the provider); the due time follows."""
    wait = min(wait, engine.settings.poll_interval_max)
    engine.store.update_fields(job.id, states=STEP_STATES["poll"], due=time.time() + wait)
    return again(wait, n=n, attempt=attempt)


def confirm_task(
    engine: Engine, job_id: str, *, task_id: str, claim: int, tries: int = 0
) -> Outcome:
    """Make a recorded task id durable on the Redis replicas (``relaydance.confirm_task``),
    or record it again where a failover lost it; ``next`` when the job moves on."""
    job = engine.store.get(job_id)
    if job is None:
        return stop("unknown or expired job")
    if job.remote_task_id != task_id:  # lost with the old primary: recorded or adopted again
        return record_task(engine, job, claim, task_id=task_id)
    try:
        engine.store.update_fields(
            job_id, states=LIVE_STATES, where={"remote_task_id": task_id}, durable=True
        )
    except NotDurable:
        confirm_later(engine, job_id, task_id=task_id, claim=claim, tries=tries + 1)
        return stop("not confirmed yet")
    return stop("confirmed")


def cancel(engine: Engine, job_id: str) -> bool:
    """Cancel a job that is not final yet; returns whether it was canceled.

    A job not yet sent gives its slot or place in line to the next job at once. A job
    whose task exists (or may: a POST in flight, an unknown submission) is canceled
    locally (no further polls, no download); its generation may still be billed, which
    its ``billing`` says, and a task id that arrives later is still recorded.
    """
    job = engine.store.get(job_id)
    if job is None:
        return False
    applied, found = engine.store.apply(job_id, CANCEL, set={"canceled_from": job.state.value})
    if not applied:
        return False
    log_transition(job, "canceled", was=found.value if found else "?")
    # A task that exists or may runs on (the provider documents no cancel endpoint): the
    # job keeps its slot until the reconciler (worker.job.slots) sees the task final.
    if found not in REMOTE_MAY_BE_LIVE:
        release(engine, job)
    notify_final(engine, job_id)
    return True


@contextlib.contextmanager
def ready_clips_here(engine: Callable[[], Engine]) -> Iterator[None]:
    """Within it (a still's download task), the clips its still's end makes ready are
    kept (:data:`~worker.job.inputs.READY_HERE`) rather than sent; on leaving, whatever
    the step did, each one's next step runs in this thread (:func:`run_here`)."""
    ready: list[Job] = []
    token = READY_HERE.set(ready)
    try:
        yield
    finally:
        READY_HERE.reset(token)
        for clip in ready:
            run_here(engine(), clip)


def run_here(engine: Engine, job: Job) -> None:
    """Run the queued clip's next step in this thread and do what it says, as its task
    would (:func:`~worker.job.advance.carry_on`); a step not run here, or anything going
    wrong, is sent instead (or, with Redis away, the sweeper resumes the clip from its due
    time)."""
    steps = plan_for(job)
    step = steps[0] if steps else ""
    try:
        if step not in _RUN_HERE:
            advance(engine, job)
            return
        carry_on(engine, _RUN_HERE[step](engine, job.id, seq=job.seq), job.id, after=step)
    except Exception:
        logger.exception("job %s: its %s in the still's thread failed; sending it", job.id, step)
        with contextlib.suppress(Exception):
            advance(engine, engine.store.get(job.id))


_RUN_HERE: dict[str, Callable[..., Outcome]] = {"prepare": prepare, "submit": submit}
