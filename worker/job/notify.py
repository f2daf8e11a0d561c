"""Telling the producer a job is final: its ``on_done`` task, at least once, for every end.

:func:`notify_final` is called wherever a job becomes final (done, failed, canceled). It
sends the producer's task, by name, the job's summary (state, error code and message,
output, times) with a ``dedupe_key`` that is the same on every delivery of that job's
notice, since delivery is at least once:

- the send is retried until the broker takes it: a failed send leaves the job in an
  outbox (``rd:notify:due``) that the sweeper works through with growing intervals;
- a task name the worker has not registered would be dropped by the worker that receives
  it (Celery logs "unregistered task" and discards the message). Inside a worker (whose
  engine knows its task registry, :attr:`~worker.job.engine.Engine.registered`) the name
  is checked first: an unknown one is recorded on the job (``relaydance status`` shows
  it), logged as an error, and retried later in case a worker that knows it starts;
- outside a worker (a ``cancel`` from the CLI), this process cannot know which tasks the
  workers registered, so it hands the job to ``relaydance.notify``, which a worker runs.

The job records what happened in ``on_done_status`` (sent, retrying, unregistered),
``on_done_error``, ``on_done_attempts`` and ``on_done_sent_at``. The first notice of a
still also moves on the storyboard clips waiting for it (:mod:`worker.job.inputs`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from kombu.exceptions import KombuError

from config.task_names import NOTIFY as NOTIFY_TASK
from worker.job.engine import Engine
from worker.job.inputs import dependants, settle_waiting
from worker.job.reachability import note_final
from worker.job.record import FINAL_STATES, Job

__all__ = [
    "NOTIFY_TASK",
    "OUTBOX_KEY",
    "deliver_due",
    "notify_final",
    "summary_for",
]

logger = logging.getLogger(__name__)

OUTBOX_KEY = "rd:notify:due"
CLAIM_SECONDS = 30  # one sender at a time per job; a crashed sender's claim lapses
RETRY_MIN, RETRY_MAX = 5.0, 300.0
UNREGISTERED_RECHECK = 300.0


def summary_for(job: Job) -> dict[str, Any]:
    """The summary an ``on_done`` task receives: the job's summary and its dedupe key."""
    return {**job.summary(), "dedupe_key": f"{job.id}:{job.state.value}"}


def _record(engine: Engine, job: Job, **fields: object) -> None:
    engine.store.update_fields(job.id, states=FINAL_STATES, set=fields)


def _later(engine: Engine, job: Job, delay: float) -> None:
    engine.redis.zadd(OUTBOX_KEY, {job.id: time.time() + delay})


def _retry_delay(attempts: int) -> float:
    return float(min(RETRY_MIN * 2.0 ** max(attempts - 1, 0), RETRY_MAX))


def notify_final(engine: Engine, job_id: str, *, hand_off: bool = True) -> str:
    """Send a final job's summary to its ``on_done`` task; return what happened.

    ``none`` (not final, or no task named), ``sent``, ``handed to a worker``, ``retrying``,
    ``unregistered``, ``busy`` (another sender holds the job) or ``already sent``.
    ``hand_off=False`` (in ``relaydance.notify`` itself) sends even where the task
    registry is unknown, so a notice is never handed on twice.
    """
    job = engine.store.get(job_id)
    if job is None or not job.is_final:
        return "none"
    if not job.notified_final:
        _record(engine, job, notified_final="1")
        note_final(engine, job)  # what the fleet learns from how the job ended
        _settle_dependants(engine, job, hand_off=hand_off)
    if not job.on_done:
        return "none"
    if job.on_done_status == "sent":
        engine.redis.zrem(OUTBOX_KEY, job_id)
        return "already sent"
    claim = f"rd:notify:claim:{job_id}"
    if not engine.redis.set(claim, "1", nx=True, ex=CLAIM_SECONDS):
        return "busy"
    try:
        return _deliver(engine, job, hand_off=hand_off)
    finally:
        engine.redis.delete(claim)


def _settle_dependants(engine: Engine, job: Job, *, hand_off: bool) -> None:
    """A still that ended moves the clips waiting for it on (see :mod:`worker.job.inputs`);
    a clip it canceled is final in turn, and told so."""
    for clip in dependants(job):
        if settle_waiting(engine, clip) == "canceled":
            notify_final(engine, clip, hand_off=hand_off)


def _deliver(engine: Engine, job: Job, *, hand_off: bool) -> str:
    attempts = job.on_done_attempts + 1
    name = job.on_done or ""
    args: tuple[Any, ...]
    registered = engine.registered
    if registered is None and hand_off:
        target, args = NOTIFY_TASK, (job.id,)
    elif registered is not None and not registered(name):
        _later(engine, job, UNREGISTERED_RECHECK)
        if job.on_done_status != "unregistered":
            problem = (
                f"no task named {name!r} is registered in the worker: check the spelling, "
                "and start the worker with -I <the module that defines it>"
            )
            _record(engine, job, on_done_status="unregistered", on_done_error=problem)
            logger.error("job %s: on_done not delivered: %s", job.id, problem)
        return "unregistered"
    else:
        target, args = name, (summary_for(job),)
    _later(engine, job, _retry_delay(attempts))  # kept until the broker has taken it
    try:
        engine.send(target, *args)
    except (KombuError, redis.RedisError, OSError) as exc:  # the broker did not take it
        _record(
            engine, job,
            on_done_status="retrying", on_done_attempts=attempts,
            on_done_error=f"could not send ({type(exc).__name__}); retrying",
        )  # fmt: skip
        logger.warning(
            "job %s: on_done %s not sent (%s); retry %d in %.0fs",
            job.id, name, type(exc).__name__, attempts, _retry_delay(attempts),
        )  # fmt: skip
        return "retrying"
    if target == NOTIFY_TASK:
        return "handed to a worker"
    engine.redis.zrem(OUTBOX_KEY, job.id)
    _record(
        engine, job,
        on_done_status="sent", on_done_attempts=attempts, on_done_sent_at=repr(time.time()),
        on_done_error="",
    )  # fmt: skip
    logger.info(
        "job %s key=%s state=%s model=%s: on_done %s sent",
        job.id, job.alias, job.state.value, job.request.get("model"), name,
    )  # fmt: skip
    return "sent"


def deliver_due(engine: Engine, *, limit: int = 200) -> list[str]:
    """Retry the notices whose time has come (the sweeper calls this); returns their jobs."""
    due = engine.redis.zrangebyscore(OUTBOX_KEY, "-inf", time.time(), start=0, num=limit)
    retried = []
    for raw in due:
        job_id = raw.decode() if isinstance(raw, bytes) else str(raw)
        job = engine.store.get(job_id)
        if job is None or not job.on_done:
            engine.redis.zrem(OUTBOX_KEY, job_id)  # expired with its record
            continue
        notify_final(engine, job_id)
        retried.append(job_id)
    return retried
