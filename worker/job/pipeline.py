"""The steps of a render job: prepare (upload), submit, poll, download, finish.

Each step is a plain function ``step(engine, job_id, *, seq, ...) -> Outcome`` that the thin
Celery tasks in ``tasks/`` call. A step loads the job record, checks that the message is
current (its ``seq`` matches the job's, and its claim is above the last one), changes the
record with a compare-and-set, and says what the task should do next: go on to the next
step of the chain, stop the chain quietly, or run again after a countdown. A duplicate,
late or stale message therefore finds the job past its step and does nothing.

Submission, the step that spends money, and its policy for ambiguous failures live in
:mod:`worker.job.submit`; delivery (download, finish) in :mod:`worker.job.deliver`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from config.settings import SettingsError
from worker.errors import PermanentError, TransientError
from worker.job.deliver import download, finish
from worker.job.engine import Engine
from worker.job.notify import notify_final
from worker.job.record import JobState
from worker.job.remote import apply_remote
from worker.job.states import STEP_STATES
from worker.job.step import (
    NEXT,
    Outcome,
    again,
    api_key,
    fail,
    first_poll_delay,
    load,
    log_transition,
    release,
    stop,
    transient,
)
from worker.job.submit import resubmit, submit
from worker.render.local_media import MediaFileRefused, allowed_dirs, expected_kind, open_media
from worker.render.request import RenderRequest, is_url

__all__ = [
    "Outcome",
    "cancel",
    "download",
    "finish",
    "first_poll_delay",
    "poll",
    "prepare",
    "resubmit",
    "submit",
]

S = JobState


def prepare(engine: Engine, job_id: str, *, seq: int, attempt: int = 0) -> Outcome:
    """Upload the request's local reference files through ``POST /files``."""
    job = load(engine, job_id, seq, "prepare")
    if isinstance(job, Outcome):
        return job
    request = RenderRequest.model_validate(job.request)
    urls = dict(job.media_urls)
    try:
        key = api_key(engine, job)
    except SettingsError as exc:
        return fail(engine, job, "unknown_key", str(exc))
    dirs = allowed_dirs(engine.settings)
    for kind, path in request.media():
        if is_url(path) or path in urls:
            continue
        wait = engine.limits.throttle(job.alias)
        if wait > 0:
            return again(wait, attempt=attempt)
        try:
            # Checked again here, by this worker's allow-list, on the handle it uploads.
            handle, mime = open_media(path, expected_kind(kind), dirs)
            client = engine.client_for(job.alias)
            urls[path] = client.upload(Path(path), api_key=key, content_type=mime, handle=handle)
        except MediaFileRefused as exc:
            return fail(engine, job, "file_refused", f"{_field(kind)}: {exc}")
        except TransientError as exc:
            return transient(engine, job, exc, attempt)
        except PermanentError as exc:
            return fail(engine, job, exc.code, f"upload of {Path(path).name}: {exc}")
        except OSError as exc:
            return fail(engine, job, "file_unreadable", f"{path}: {exc.strerror}")
        engine.store.change(
            job_id, states={S.QUEUED}, where={"seq": seq}, set={"media_urls": json.dumps(urls)}
        )
        log_transition(job, "uploaded", file=Path(path).name)
    return NEXT


def _field(kind: str) -> str:
    return {"image": "images", "video": "videos"}.get(kind, kind)


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
    settings = engine.settings
    submitted_at = job.times.get("submitted", job.created_at)
    if now - submitted_at > settings.poll_deadline_seconds:
        return fail(
            engine,
            job,
            "deadline_exceeded",
            f"not finished {settings.poll_deadline_seconds:.0f}s after submission "
            "(RELAYDANCE_POLL_DEADLINE_SECONDS)",
        )
    wait = engine.limits.throttle(job.alias)
    if wait > 0:
        engine.store.change(job_id, states=live, due=now + wait)
        return again(wait, n=n, attempt=attempt)
    applied, _ = engine.store.change(
        job_id,
        states=live,
        where={"seq": seq, "poll_count": n},
        incr={"poll_count": 1},
        set={"last_poll_at": now},
        # One call with an overall deadline: a poll not done by then lost its worker.
        due=now + engine.settings.http_call_deadline + engine.settings.sweep_grace_seconds,
    )
    if not applied:
        return stop("poll already claimed")
    try:
        client = engine.client_for(job.alias)
        task = client.get_task(job.remote_task_id or "", api_key=api_key(engine, job))
    except TransientError as exc:
        retry = transient(engine, job, exc, attempt, n=n + 1)
        if retry.action == "again":  # the retry is the next poll: due then, not at the grace
            engine.store.change(job_id, states=live, due=time.time() + retry.countdown)
        return retry
    except PermanentError as exc:
        return fail(engine, job, exc.code, str(exc))
    return apply_remote(engine, job, task, polls_done=n + 1)


# States in which the job's remote task exists or may exist: canceling one does not stop
# the provider (it documents no cancel endpoint), so the job keeps its slot until the
# reconciler (worker.job.slots) sees the task final.
_REMOTE_MAY_LIVE = frozenset({S.SUBMITTING, S.SUBMIT_UNKNOWN, S.SUBMITTED, S.RUNNING})


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
    applied, found = engine.store.change(
        job_id, states=None, to=S.CANCELED, set={"canceled_from": job.state.value}
    )
    if not applied:
        return False
    log_transition(job, "canceled", was=found.value if found else "?")
    if found not in _REMOTE_MAY_LIVE:
        release(engine, job)
    notify_final(engine, job_id)
    return True
