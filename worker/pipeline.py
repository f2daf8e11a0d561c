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
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr

from config.settings import SettingsError
from worker.dialects import RemoteTask, TaskStatus
from worker.download import UrlExpired, cleanup_partials, download_video, write_manifest
from worker.engine import Engine
from worker.errors import PermanentError, RateLimited, RelayDanceError, TransientError
from worker.jobs import Job, JobState
from worker.metrics import record_generated
from worker.request import RenderRequest
from worker.timing import next_poll_delay
from worker.webhooks import callback_url_for

__all__ = [
    "Outcome",
    "apply_remote",
    "download",
    "finish",
    "first_poll_delay",
    "poll",
    "prepare",
    "submit",
]

logger = logging.getLogger(__name__)

S = JobState
STEP_GRACE = 90.0  # how long a claimed step may run before the sweeper takes it over
WAITING_RECHECK = 60.0  # how often the sweeper looks at a job waiting for a slot
EARLY_FINISH_FACTOR = 0.75  # a first-poll hit: "finished sooner than this"
HEARTBEAT_EVERY = 5.0  # a running download moves its due time this often ...
HEARTBEAT_GRACE = 15.0  # ... this far ahead


@dataclass(frozen=True)
class Outcome:
    """What the task should do after a step."""

    action: Literal["next", "stop", "again"]
    countdown: float = 0.0
    reason: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)


NEXT = Outcome("next")


def _stop(reason: str) -> Outcome:
    return Outcome("stop", reason=reason)


def _again(countdown: float, **kwargs: Any) -> Outcome:
    return Outcome("again", countdown=max(countdown, 0.0), kwargs=kwargs)


def _load(engine: Engine, job_id: str, seq: int, states: set[JobState]) -> Job | Outcome:
    job = engine.store.get(job_id)
    if job is None:
        return _stop("unknown or expired job")
    if job.seq != seq:
        return _stop(f"stale message (seq {seq}, job at {job.seq})")
    if job.state not in states:
        return _stop(f"job is {job.state}")
    return job


def _key(engine: Engine, job: Job) -> SecretStr:
    return engine.settings.key_for(job.alias)


def _log(job: Job, state: str, **details: Any) -> None:
    elapsed = time.time() - job.created_at if job.created_at else 0.0
    extra = " ".join(f"{k}={v}" for k, v in details.items())
    logger.info("job %s key=%s state=%s elapsed=%.2fs %s", job.id, job.alias, state, elapsed, extra)


def _backoff(attempt: int, *, hint: float | None = None) -> float:
    base = min(2.0**attempt, 60.0) * random.uniform(0.5, 1.5)  # noqa: S311 - jitter only
    return max(base, hint or 0.0)


def _fail(engine: Engine, job: Job, code: str, message: str) -> Outcome:
    if engine.store.fail(job.id, code=code, message=message):
        _log(job, "failed", code=code)
        _release(engine, job)
    return _stop(f"failed: {code}")


def _release(engine: Engine, job: Job) -> None:
    limit = engine.settings.concurrency_for(job.alias)
    for granted in engine.limits.release(job.alias, job.id, limit=limit):
        engine.send("relaydance.resume", granted)


def _transient(
    engine: Engine, job: Job, exc: TransientError, attempt: int, **kwargs: Any
) -> Outcome:
    if attempt >= engine.settings.max_transient_retries:
        return _fail(engine, job, exc.code, f"gave up after {attempt + 1} attempts: {exc}")
    hint = exc.retry_after if isinstance(exc, RateLimited) else None
    delay = _backoff(attempt, hint=hint)
    logger.warning("job %s %s; retrying in %.1fs: %s", job.id, exc.code, delay, exc)
    return _again(delay, attempt=attempt + 1, **kwargs)


# Steps -------------------------------------------------------------------------------------


def prepare(engine: Engine, job_id: str, *, seq: int, attempt: int = 0) -> Outcome:
    """Upload the request's local reference files through ``POST /files``."""
    job = _load(engine, job_id, seq, {S.QUEUED})
    if isinstance(job, Outcome):
        return job
    request = RenderRequest.model_validate(job.request)
    urls: dict[str, str] = json.loads(job.extra.get("media_urls", "{}"))
    try:
        key = _key(engine, job)
    except SettingsError as exc:
        return _fail(engine, job, "unknown_key", str(exc))
    for path in request.local_paths():
        if path in urls:
            continue
        wait = engine.limits.throttle(job.alias, rate=engine.settings.rate_for(job.alias))
        if wait > 0:
            return _again(wait, attempt=attempt)
        try:
            urls[path] = engine.client.upload(Path(path), api_key=key)
        except TransientError as exc:
            return _transient(engine, job, exc, attempt)
        except PermanentError as exc:
            return _fail(engine, job, exc.code, f"upload of {Path(path).name}: {exc}")
        except OSError as exc:
            return _fail(engine, job, "file_unreadable", f"{path}: {exc.strerror}")
        engine.store.change(
            job_id, states={S.QUEUED}, where={"seq": seq}, set={"media_urls": json.dumps(urls)}
        )
        _log(job, "uploaded", file=Path(path).name)
    return NEXT


def submit(engine: Engine, job_id: str, *, seq: int, attempt: int = 0) -> Outcome:
    """Take a slot (or wait in line), then POST the request once, with an idempotency key."""
    job = _load(engine, job_id, seq, {S.QUEUED, S.WAITING_FOR_SLOT, S.SUBMITTING})
    if isinstance(job, Outcome):
        return job
    settings = engine.settings
    if job.remote_task_id:  # recorded, but the state change was lost
        engine.store.change(job_id, states={S.SUBMITTING}, to=S.SUBMITTED, due=time.time())
        return NEXT
    try:
        key = _key(engine, job)
    except SettingsError as exc:
        return _fail(engine, job, "unknown_key", str(exc))
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
            _log(job, "waiting_for_slot", position=slot.position)
        return _stop("waiting for a slot")
    wait = engine.limits.throttle(job.alias, rate=settings.rate_for(job.alias))
    if wait > 0:
        return _again(wait, attempt=attempt)
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
        return _stop("submit already claimed")
    request = RenderRequest.model_validate(job.request)
    urls = json.loads(job.extra.get("media_urls", "{}"))
    body = request.to_body(callback_url=callback_url_for(settings, job_id), media_urls=urls)
    try:
        task = engine.client.submit(body, api_key=key, idempotency_key=job_id)
    except RateLimited as exc:
        return _back_in_line(engine, job, exc)
    except TransientError as exc:
        return _transient(engine, job, exc, attempt)
    except PermanentError as exc:
        return _fail(engine, job, exc.code, str(exc))
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
        return _stop("submission already recorded")
    engine.limits.on_success(job.alias, limit=limit)
    _log(job, "submitted", remote=task.task_id, first_poll=f"{first:.1f}s")
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
    _log(job, "waiting_for_slot", reason="429", retry_after=wait, effective_limit=effective)
    return _stop("rate limited; back in line")


def poll(engine: Engine, job_id: str, *, seq: int, n: int = 0, attempt: int = 0) -> Outcome:
    """Ask the provider once how the task is doing; reschedule by countdown if not final."""
    job = _load(engine, job_id, seq, {S.SUBMITTED, S.RUNNING})
    if isinstance(job, Outcome):
        return job
    if job.poll_count != n:
        return _stop(f"duplicate poll {n} (job at {job.poll_count})")
    now = time.time()
    if job.next_due is not None and now < job.next_due - 0.05:
        return _again(job.next_due - now, n=n, attempt=attempt)
    settings = engine.settings
    submitted_at = job.times.get("submitted", job.created_at)
    if now - submitted_at > settings.poll_deadline_seconds:
        return _fail(
            engine,
            job,
            "deadline_exceeded",
            f"not finished {settings.poll_deadline_seconds:.0f}s after submission "
            "(RELAYDANCE_POLL_DEADLINE_SECONDS)",
        )
    wait = engine.limits.throttle(job.alias, rate=settings.rate_for(job.alias))
    if wait > 0:
        engine.store.change(job_id, states={S.SUBMITTED, S.RUNNING}, due=now + wait)
        return _again(wait, n=n, attempt=attempt)
    applied, _ = engine.store.change(
        job_id,
        states={S.SUBMITTED, S.RUNNING},
        where={"seq": seq, "poll_count": n},
        incr={"poll_count": 1},
        set={"last_poll_at": now},
        due=now + STEP_GRACE,
    )
    if not applied:
        return _stop("poll already claimed")
    if not engine.limits.renew(job.alias, job_id):
        # The lease lapsed while no worker ran this job (a killed worker). Its remote task
        # is running regardless, so take the slot back if one is free, without queueing.
        engine.limits.acquire(
            job.alias, job_id, limit=settings.concurrency_for(job.alias), wait=False
        )
    try:
        task = engine.client.get_task(job.remote_task_id or "", api_key=_key(engine, job))
    except TransientError as exc:
        return _transient(engine, job, exc, attempt, n=n + 1)
    except PermanentError as exc:
        return _fail(engine, job, exc.code, str(exc))
    return apply_remote(engine, job, task, polls_done=n + 1)


def apply_remote(engine: Engine, job: Job, task: RemoteTask, *, polls_done: int) -> Outcome:
    """Move a job by what the provider says of its task (from a poll or a verified webhook)."""
    now = time.time()
    live = {S.SUBMITTED, S.RUNNING}
    if task.status is TaskStatus.SUCCEEDED:
        applied, _ = engine.store.change(
            job.id,
            states=live,
            to=S.GENERATED,
            set={"remote_status": task.raw_status},
            due=now + STEP_GRACE,
        )
        if not applied:
            return _stop("already past generation")
        _release(engine, job)
        _learn_duration(engine, job, polls_done=polls_done, now=now)
        record_generated(engine, polls=polls_done, cost=job.cost)
        _log(job, "generated", polls=polls_done)
        return NEXT
    if task.status is TaskStatus.FAILED:
        message = task.error or "the provider reported the generation failed (not billed)"
        return _fail(engine, job, "generation_failed", message)
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
        _log(job, "running")
    return _again(delay, n=polls_done, attempt=0)


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


def download(engine: Engine, job_id: str, *, seq: int, attempt: int = 0) -> Outcome:
    """Fetch a fresh url from the task and stream the clip safely into the output dir."""
    job = _load(engine, job_id, seq, {S.GENERATED, S.DOWNLOADING})
    if isinstance(job, Outcome):
        return job
    if job.extra.get("downloaded") == "1":
        return NEXT
    settings = engine.settings
    wait = engine.limits.throttle(job.alias, rate=settings.rate_for(job.alias))
    if wait > 0:
        return _again(wait, attempt=attempt)
    claim = f"download:{seq}:{attempt}"
    applied, _ = engine.store.change(
        job_id,
        states={S.GENERATED, S.DOWNLOADING},
        to=S.DOWNLOADING,
        where={"seq": seq},
        where_not={"claim": claim},
        set={"claim": claim},
        due=time.time() + HEARTBEAT_GRACE,
    )
    if not applied:
        return _stop("download already claimed")
    out_dir = Path(settings.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cleanup_partials(out_dir, job_id)
    started = time.time()
    heartbeat = _Heartbeat(engine, job_id, claim)
    try:
        task = engine.client.get_task(job.remote_task_id or "", api_key=_key(engine, job))
        if not task.url:
            return _fail(engine, job, "unexpected_response", "the succeeded task has no url")
        result = download_video(
            task.url,
            dest_dir=out_dir,
            name=job_id,
            client=engine.downloads,
            max_bytes=settings.download_max_bytes,
            allow_local=settings.allow_local_urls,
            overall_timeout=settings.download_timeout,
            on_progress=heartbeat,
        )
    except UrlExpired as exc:
        # The signed url expired: the next attempt re-fetches the task for a fresh one.
        if attempt >= 3:
            return _fail(engine, job, exc.code, str(exc))
        return _again(0.2, attempt=attempt + 1)
    except TransientError as exc:
        return _transient(engine, job, exc, attempt)
    except PermanentError as exc:
        return _fail(engine, job, exc.code, str(exc))
    write_manifest(
        out_dir / f"{job_id}.json",
        _manifest(job, size=result.size, sha256=result.sha256, seconds=time.time() - started),
    )
    engine.store.change(
        job_id,
        states={S.DOWNLOADING},
        where={"seq": seq},
        set={
            "output_path": str(result.path.resolve()),
            "size": result.size,
            "sha256": result.sha256,
            "downloaded": "1",
        },
        due=time.time() + STEP_GRACE,
    )
    _log(job, "downloaded", bytes=result.size, seconds=f"{result.seconds:.2f}")
    return NEXT


class _Heartbeat:
    """Keeps a running download's step due in the near future while bytes arrive.

    A download may take minutes, but a dead one should be noticed in about a minute: the
    sweeper resumes the job once the heartbeat stops moving its due time.
    """

    def __init__(self, engine: Engine, job_id: str, claim: str) -> None:
        self.engine, self.job_id, self.claim = engine, job_id, claim
        self.last = time.monotonic()

    def __call__(self, size: int) -> None:
        now = time.monotonic()
        if now - self.last < HEARTBEAT_EVERY:
            return
        self.last = now
        self.engine.store.change(
            self.job_id,
            states={S.DOWNLOADING},
            where={"claim": self.claim},
            due=time.time() + HEARTBEAT_GRACE,
        )


def _manifest(job: Job, *, size: int, sha256: str, seconds: float) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "key": job.alias,
        "request": job.request,
        "remote_task_id": job.remote_task_id,
        "size": size,
        "sha256": sha256,
        "estimated_cost_usd": job.cost,
        "times": {**job.times, "download_seconds": round(seconds, 3)},
        "polls": job.poll_count,
    }


def finish(engine: Engine, job_id: str, *, seq: int) -> Outcome:
    """Mark the job done and notify the producer's own task, when one was named."""
    job = _load(engine, job_id, seq, {S.DOWNLOADING})
    if isinstance(job, Outcome):
        return job
    applied, _ = engine.store.change(
        job_id, states={S.DOWNLOADING}, to=S.DONE, where={"seq": seq, "downloaded": "1"}
    )
    if not applied:
        return _stop("not ready to finish, or already finished")
    done = engine.store.get(job_id)
    _log(job, "done", output=job.output_path)
    if job.on_done and done is not None:
        try:
            engine.send(job.on_done, done.summary())
        except RelayDanceError:  # pragma: no cover - send_task raises kombu errors
            logger.exception("job %s: could not send on_done task %s", job_id, job.on_done)
    return NEXT
