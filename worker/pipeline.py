"""The steps of a render job: prepare (upload), submit, poll, download, finish.

Each step is a plain function ``step(engine, job_id, *, seq, ...) -> Outcome`` that the thin
Celery tasks in ``tasks/`` call. A step loads the job record, checks that the message is
current (its ``seq`` matches the job's, and its claim is not already taken), changes the
record with a compare-and-set, and says what the task should do next: go on to the next
step of the chain, stop the chain quietly, or run again after a countdown. A duplicate,
late or stale message therefore finds the job past its step and does nothing.

Submission policy (the one ambiguous window): intent is written (state ``submitting``,
a claim and a timestamp) before the POST, the POST carries ``Idempotency-Key: <job id>``,
and the remote task id is recorded the moment the response arrives. If a worker dies
between the POST and that record, the sweeper re-runs submit with the same idempotency
key: a provider that honours the key returns the first task and nothing is paid twice.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from config.settings import SettingsError
from worker.delivery import download, finish
from worker.dialects import RemoteTask, TaskStatus
from worker.engine import Engine
from worker.errors import PermanentError, RateLimited, TransientError
from worker.jobs import Job, JobState
from worker.metrics import record_generated
from worker.request import RenderRequest
from worker.steps import (
    NEXT,
    STEP_GRACE,
    WAITING_RECHECK,
    Outcome,
    again,
    api_key,
    fail,
    load,
    log_transition,
    release,
    stop,
    transient,
)
from worker.timing import next_poll_delay
from worker.webhooks import callback_url_for

__all__ = [
    "Outcome",
    "apply_remote",
    "cancel",
    "download",
    "finish",
    "first_poll_delay",
    "poll",
    "prepare",
    "submit",
]

S = JobState
EARLY_FINISH_FACTOR = 0.75  # a first-poll hit: "finished sooner than this"


def prepare(engine: Engine, job_id: str, *, seq: int, attempt: int = 0) -> Outcome:
    """Upload the request's local reference files through ``POST /files``."""
    job = load(engine, job_id, seq, {S.QUEUED})
    if isinstance(job, Outcome):
        return job
    request = RenderRequest.model_validate(job.request)
    urls: dict[str, str] = json.loads(job.extra.get("media_urls", "{}"))
    try:
        key = api_key(engine, job)
    except SettingsError as exc:
        return fail(engine, job, "unknown_key", str(exc))
    for path in request.local_paths():
        if path in urls:
            continue
        wait = engine.limits.throttle(job.alias, rate=engine.settings.rate_for(job.alias))
        if wait > 0:
            return again(wait, attempt=attempt)
        try:
            urls[path] = engine.client_for(job.alias).upload(Path(path), api_key=key)
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


def submit(engine: Engine, job_id: str, *, seq: int, attempt: int = 0) -> Outcome:
    """Take a slot (or wait in line), then POST the request once, with an idempotency key."""
    job = load(engine, job_id, seq, {S.QUEUED, S.WAITING_FOR_SLOT, S.SUBMITTING})
    if isinstance(job, Outcome):
        return job
    settings = engine.settings
    if job.remote_task_id:  # recorded, but the state change was lost
        engine.store.change(job_id, states={S.SUBMITTING}, to=S.SUBMITTED, due=time.time())
        return NEXT
    try:
        key = api_key(engine, job)
    except SettingsError as exc:
        return fail(engine, job, "unknown_key", str(exc))
    limit = settings.concurrency_for(job.alias)
    slot = engine.limits.acquire(job.alias, job_id, limit=limit)
    for earlier in slot.also_granted:  # waiters ahead of us got slots a lapsed lease freed
        engine.send("relaydance.resume", earlier)
    if not slot.granted:
        applied, _ = engine.store.change(
            job_id,
            states={S.QUEUED, S.WAITING_FOR_SLOT},
            to=S.WAITING_FOR_SLOT,
            where={"seq": seq},
            due=time.time() + WAITING_RECHECK,
        )
        if applied and job.state != S.WAITING_FOR_SLOT:
            log_transition(job, "waiting_for_slot", position=slot.position)
        return stop("waiting for a slot")
    wait = engine.limits.throttle(job.alias, rate=settings.rate_for(job.alias))
    if wait > 0:
        return again(wait, attempt=attempt)
    claim = f"submit:{seq}:{attempt}"
    applied, _ = engine.store.change(
        job_id,
        states={S.QUEUED, S.WAITING_FOR_SLOT, S.SUBMITTING},
        to=S.SUBMITTING,
        where={"seq": seq},
        where_not={"claim": claim},
        set={"claim": claim, "submit_intent_at": time.time()},
        incr={"submit_attempts": 1},
        due=time.time() + STEP_GRACE,
    )
    if not applied:
        return stop("submit already claimed")
    request = RenderRequest.model_validate(job.request)
    urls = json.loads(job.extra.get("media_urls", "{}"))
    body = request.to_body(callback_url=callback_url_for(settings, job_id), media_urls=urls)
    try:
        task = engine.client_for(job.alias).submit(body, api_key=key, idempotency_key=job_id)
    except RateLimited as exc:
        return _back_in_line(engine, job, exc)
    except TransientError as exc:
        return transient(engine, job, exc, attempt)
    except PermanentError as exc:
        return fail(engine, job, exc.code, str(exc))
    first = first_poll_delay(engine, request.model, request.seconds)
    recorded, _ = engine.store.change(
        job_id,
        states={S.SUBMITTING},
        to=S.SUBMITTED,
        where={"claim": claim},
        set={"remote_task_id": task.task_id, "remote_status": task.raw_status},
        due=time.time() + first,
    )
    if not recorded:
        # A webhook adopted the first submission's task while this POST was in flight;
        # if the provider ignored the Idempotency-Key, this is a second, paid task.
        from worker.webhook_step import record_duplicate_spend  # cycle: it imports us

        now = engine.store.get(job_id)
        if now is not None and now.remote_task_id and now.remote_task_id != task.task_id:
            record_duplicate_spend(engine, now, task)
        return stop("submission already recorded")
    engine.limits.on_success(job.alias, limit=limit)
    log_transition(job, "submitted", remote=task.task_id, first_poll=f"{first:.1f}s")
    return NEXT


def first_poll_delay(engine: Engine, model: str, seconds: int) -> float:
    """Seconds from submission to the first poll: near the expected generation time."""
    settings = engine.settings
    expected = engine.timing.expected(model, seconds)
    if settings.webhook_base_url:
        return max(settings.webhook_safety_poll_seconds, expected)
    if settings.poll_first_delay is not None:
        return settings.poll_first_delay
    return next_poll_delay(
        polls_done=0,
        elapsed=0.0,
        expected=expected,
        minimum=settings.poll_interval_min,
        maximum=settings.poll_interval_max,
    )


def _back_in_line(engine: Engine, job: Job, exc: RateLimited) -> Outcome:
    """HTTP 429 on submit: nothing was created. Lower the key's limit and queue at the head."""
    limit = engine.settings.concurrency_for(job.alias)
    # This job still holds its slot: the others in use were running when the provider
    # refused, which is the cap it enforces for this key.
    in_flight = max(engine.limits.in_use(job.alias) - 1, 0)
    effective = engine.limits.on_rate_limited(
        job.alias, limit=limit, retry_after=exc.retry_after, in_flight=in_flight
    )
    wait = exc.retry_after if exc.retry_after is not None else 5.0
    # A 429 created nothing: clear the claim so the next submit message may POST again.
    engine.store.change(
        job.id,
        states={S.SUBMITTING},
        to=S.WAITING_FOR_SLOT,
        set={"claim": ""},
        due=time.time() + wait + WAITING_RECHECK,
    )
    # push_front gives up the slot and queues the job first, without handing the slot
    # to another waiter who would submit into the same overload.
    engine.limits.push_front(job.alias, job.id)
    engine.send("relaydance.grant", job.alias, countdown=wait)
    log_transition(
        job, "waiting_for_slot", reason="429", retry_after=wait, effective_limit=effective
    )
    return stop("rate limited; back in line")


def poll(engine: Engine, job_id: str, *, seq: int, n: int = 0, attempt: int = 0) -> Outcome:
    """Ask the provider once how the task is doing; reschedule by countdown if not final."""
    job = load(engine, job_id, seq, {S.SUBMITTED, S.RUNNING})
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
    wait = engine.limits.throttle(job.alias, rate=settings.rate_for(job.alias))
    if wait > 0:
        engine.store.change(job_id, states={S.SUBMITTED, S.RUNNING}, due=now + wait)
        return again(wait, n=n, attempt=attempt)
    applied, _ = engine.store.change(
        job_id,
        states={S.SUBMITTED, S.RUNNING},
        where={"seq": seq, "poll_count": n},
        incr={"poll_count": 1},
        set={"last_poll_at": now},
        due=now + STEP_GRACE,
    )
    if not applied:
        return stop("poll already claimed")
    if not engine.limits.renew(job.alias, job_id):
        # The lease lapsed while no worker ran this job (a killed worker). Its remote task
        # is running regardless, so take the slot back if one is free, without queueing.
        engine.limits.acquire(
            job.alias, job_id, limit=settings.concurrency_for(job.alias), wait=False
        )
    try:
        client = engine.client_for(job.alias)
        task = client.get_task(job.remote_task_id or "", api_key=api_key(engine, job))
    except TransientError as exc:
        return transient(engine, job, exc, attempt, n=n + 1)
    except PermanentError as exc:
        return fail(engine, job, exc.code, str(exc))
    return apply_remote(engine, job, task, polls_done=n + 1)


def apply_remote(engine: Engine, job: Job, task: RemoteTask, *, polls_done: int) -> Outcome:
    """Move a job by what the provider says of its task (from a poll or a verified webhook)."""
    now = time.time()
    live = {S.SUBMITTED, S.RUNNING}
    # What the provider says it charged, when it says, is the job's actual spend.
    spent = {} if task.actual_cost is None else {"actual_cost": task.actual_cost}
    if task.status is TaskStatus.SUCCEEDED:
        applied, _ = engine.store.change(
            job.id,
            states=live,
            to=S.GENERATED,
            set={"remote_status": task.raw_status, **spent},
            due=now + STEP_GRACE,
        )
        if not applied:
            return stop("already past generation")
        release(engine, job)
        _learn_duration(engine, job, polls_done=polls_done, now=now)
        cost = job.cost if task.actual_cost is None else task.actual_cost
        record_generated(engine, polls=polls_done, cost=cost)
        log_transition(job, "generated", polls=polls_done)
        return NEXT
    if task.status is TaskStatus.FAILED:
        if spent:
            engine.store.change(job.id, states=live, set=spent)
        message = task.error or "the provider reported the generation failed (not billed)"
        return fail(engine, job, "generation_failed", message)
    submitted_at = job.times.get("submitted", job.created_at)
    request = job.request
    delay = next_poll_delay(
        polls_done=polls_done,
        elapsed=now - submitted_at,
        expected=engine.timing.expected(str(request["model"]), int(request["seconds"])),
        minimum=engine.settings.poll_interval_min,
        maximum=engine.settings.poll_interval_max,
        hint=task.retry_after,
    )
    engine.store.change(
        job.id,
        states=live,
        to=S.RUNNING if task.status is TaskStatus.RUNNING else None,
        set={"remote_status": task.raw_status},
        due=now + delay,
    )
    if job.state is S.SUBMITTED and task.status is TaskStatus.RUNNING:
        log_transition(job, "running")
    return again(delay, n=polls_done, attempt=0)


def _learn_duration(engine: Engine, job: Job, *, polls_done: int, now: float) -> None:
    """Fold what this job says about its model's generation time into the learned value.

    After a miss (an earlier poll saw it unfinished) the task finished between the last
    two polls: take their midpoint. A first poll that already finds it done only says it
    finished sooner than expected, so nudge the estimate down; taking the poll time itself
    would let the estimate only ever rise.
    """
    model, seconds = str(job.request["model"]), int(job.request["seconds"])
    submitted_at = job.times.get("submitted", job.created_at)
    if polls_done > 1:
        last = float(job.extra.get("last_poll_at", submitted_at))
        duration = (last + now) / 2 - submitted_at
    else:
        expected = engine.timing.expected(model, seconds)
        duration = min(now - submitted_at, expected) * EARLY_FINISH_FACTOR
    engine.timing.record(model, seconds, max(duration, 0.1))


def cancel(engine: Engine, job_id: str) -> bool:
    """Cancel a job that is not final yet; its slot or place in line goes to the next job.

    A job already submitted is canceled locally (no further polls, no download); the
    provider documents no cancel endpoint, so its generation may still be billed.
    """
    job = engine.store.get(job_id)
    if job is None or not engine.store.cancel(job_id):
        return False
    release(engine, job)
    return True
