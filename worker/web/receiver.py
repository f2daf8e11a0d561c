"""The one webhook handler every web adapter calls.

A delivery's path carries the job id and its callback token (:mod:`worker.job.callback`).
The handler is framework-agnostic (``worker.web.app`` serves it with Starlette,
``worker.web.integrations`` mounts it in Flask and Django) and does as little as it can, fast:

    token wrong, job unknown            -> 404, nothing changes
    token expired (and genuine)         -> 410, nothing changes
    body over MAX_BODY_BYTES            -> 413
    not application/json                -> 415
    not a JSON object, too deep, bad id -> 400 (the id read by the job's provider dialect)
    a job with nothing left to learn    -> 200, ignored (final jobs, duplicates, stale
                                           deliveries, a task id the job cannot own)
    otherwise                           -> 202, ``relaydance.webhook`` enqueued

The body is never trusted: its task id is only a hint. The ``relaydance.webhook`` task
(:mod:`worker.job.webhook`) re-fetches that task with the job's own key before the job
moves, and the download step fetches the url from the provider again. Re-fetches are
rate-limited per job (``RELAYDANCE_WEBHOOK_REFETCH_SECONDS``): deliveries inside the
window are folded into one trailing re-fetch, so replays cannot spend the key's rate.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from typing import Any

import redis
from kombu.exceptions import KombuError

from config.task_names import WEBHOOK as WEBHOOK_TASK
from worker.job.callback import (
    token_status,
    verify_claim,
)
from worker.job.engine import Engine, get_engine
from worker.job.record import Job
from worker.job.states import WEBHOOK_MOVABLE
from worker.provider.dialects import Dialect

__all__ = [
    "MAX_BODY_BYTES",
    "WEBHOOK_TASK",
    "handle_webhook",
    "is_json_content_type",
    "receiver_health",
    "task_id_hint",
]

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024  # a task JSON is well under 2 KiB

_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_GATE = "rd:hookgate:"  # a re-fetch started in the window (SET NX PX)
_TRAIL = "rd:hooktrail:"  # a trailing re-fetch is already queued for the window
_TASK_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")

Reply = tuple[int, dict[str, Any]]
_NOT_FOUND: Reply = (404, {"ok": False, "error": "not found"})
_EXPIRED: Reply = (410, {"ok": False, "error": "callback expired"})
_IGNORED: Reply = (200, {"ok": True, "status": "ignored"})


def is_json_content_type(content_type: str) -> bool:
    """Whether a Content-Type header names JSON (``application/json``, ``+json``)."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def task_id_hint(payload: dict[str, Any], *, dialect: Dialect | None = None) -> str | None:
    """The remote task id a webhook body names, or None; raises ValueError on a malformed one.

    ``dialect`` (the job's provider) reads its own body shape, e.g. Kinovi's envelope;
    without one, ``task_id`` at the top level or under ``data`` is looked for.
    """
    if dialect is not None:
        value = dialect.webhook_task_id(payload)
    else:
        value = payload.get("task_id")
        if value is None:
            data = payload.get("data")
            value = data.get("task_id") if isinstance(data, dict) else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("task_id must be a string")
    text = str(value).strip()
    if not _TASK_ID.fullmatch(text):
        raise ValueError("task_id is malformed")
    return text


def handle_webhook(
    job_id: str,
    token: str,
    body: bytes,
    content_type: str,
    *,
    claim: str | None = None,
    engine: Engine | None = None,
) -> Reply:
    """Answer one webhook delivery: ``(HTTP status, JSON body)``; see the module docstring.

    ``body`` may be cut short by the adapter at ``MAX_BODY_BYTES + 1`` bytes: anything
    longer is refused unread.
    """
    engine = engine or get_engine()
    secret = engine.settings.webhook_secret
    if secret is None:
        return _NOT_FOUND  # webhooks are off: there is nothing to call back
    # Cheap shape checks first; the HMAC comparison itself is constant-time.
    if not _JOB_ID.fullmatch(job_id):
        return _NOT_FOUND
    status = token_status(secret.get_secret_value(), job_id, token)
    if status != "ok":
        logger.warning("webhook for job %s refused: %s token", job_id, status)
        return _EXPIRED if status == "expired" else _NOT_FOUND
    submission = None if claim is None else verify_claim(secret.get_secret_value(), job_id, claim)
    if claim is not None and submission is None:
        logger.warning("webhook for job %s refused: wrong submission proof", job_id)
        return _NOT_FOUND
    if len(body) > MAX_BODY_BYTES:
        return 413, {"ok": False, "error": f"body larger than {MAX_BODY_BYTES} bytes"}
    if not is_json_content_type(content_type):
        return 415, {"ok": False, "error": "content type must be application/json"}
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return 400, {"ok": False, "error": "body is not valid JSON"}
    except RecursionError:  # nested deeper than the parser's stack: never a 500
        return 400, {"ok": False, "error": "body is nested too deeply"}
    if not isinstance(payload, dict):
        return 400, {"ok": False, "error": "body must be a JSON object"}
    try:
        digest = hashlib.sha256(body).hexdigest()[:32]
        return _dispatch(engine, job_id, payload, digest, submission)
    except (redis.RedisError, KombuError, OSError) as exc:
        # The provider retries a failed delivery; the safety poll covers the rest.
        logger.warning("webhook for job %s not taken: %s", job_id, type(exc).__name__)
        return 503, {"ok": False, "error": "temporarily unavailable"}


# The fields the decision reads; the store opens the per-job re-fetch gate (SET NX PX) in
# the same round trip for a job that is not final.
_FIELDS = ("state", "alias", "remote_task_id", "billing", "orphans", "submit_claim")


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def receiver_health(*, engine: Engine | None = None) -> Reply:
    """Answer ``GET <mount>/healthz``: 200 when Redis answers, which taking a webhook needs.

    Workers call it through the public base URL at start (:mod:`worker.job.reachability`).
    """
    try:
        (engine or get_engine()).redis.ping()
    except (redis.RedisError, OSError) as exc:
        return 503, {"ok": False, "redis": type(exc).__name__}
    return 200, {"ok": True}


def _dispatch(
    engine: Engine, job_id: str, payload: dict[str, Any], digest: str, claim: int | None
) -> Reply:
    # The job and the per-job re-fetch gate in one round trip: the gate is opened on every
    # verified delivery (one that is then ignored only holds it for the short window).
    window_ms = max(1, int(engine.settings.webhook_refetch_seconds * 1000))
    found, opened = engine.store.read_gated(
        job_id, names=_FIELDS, gate=_GATE + job_id, holder=digest, window_ms=window_ms
    )
    if found is None:
        return _NOT_FOUND
    # A partial snapshot: only the fields this decision reads (the step reads the whole).
    data = {"request": "{}"} | {k: v for k, v in found.items() if v}
    job = Job.from_hash(job_id, data)
    if job.is_final:  # nothing a delivery says can change a final job: no work, no GET
        return _IGNORED
    from worker.job.webhook import may_have_orphan  # the task's module builds on this one

    try:
        # Each provider shapes its webhook its own way: the job's dialect reads it.
        hint = task_id_hint(payload, dialect=engine.client_for(job.alias).dialect)
    except ValueError as exc:
        return 400, {"ok": False, "error": str(exc)}
    recorded = job.remote_task_id
    if recorded is None:
        # Only a submission whose reply was lost can be adopted, through its own callback
        # URL (which proves the submission); a job back in line after a plain 429 created
        # nothing and has nothing to adopt.
        wanted = hint is not None and claim is not None and may_have_orphan(job, claim)
    elif hint is None or hint == recorded:
        wanted = job.state in WEBHOOK_MOVABLE
    else:
        # Another task than the recorded one: a second billed submission only when the
        # job had another submission (orphans), through whose URL it came; otherwise a
        # replay of someone else's task.
        wanted = job.orphans > 0 and claim is not None
    if not wanted:
        logger.debug("job %s: webhook ignored, job is %s", job_id, job.state)
        return _IGNORED
    return _queue_refetch(engine, job_id, hint, digest, claim, opened=opened)


def _queue_refetch(
    engine: Engine, job_id: str, hint: str | None, digest: str, claim: int | None, *, opened: bool
) -> Reply:
    """Queue the re-fetch now, or once at the end of the job's window, or not at all.

    At most one re-fetch per job starts per ``webhook_refetch_seconds``. Inside the window
    a copy of the delivery that opened it (a replay, or the provider's duplicate) queues
    nothing; a different body (``running`` then ``succeeded``) queues one trailing
    re-fetch, so a final status is never lost, and any more are folded into it.
    """
    if opened:  # this delivery opened the window: re-fetch now
        engine.send(WEBHOOK_TASK, job_id, hint, 0, claim)
        logger.info("job %s: webhook accepted (task %s)", job_id, hint or "recorded")
        return 202, {"ok": True, "status": "accepted"}
    window_ms = max(1, int(engine.settings.webhook_refetch_seconds * 1000))
    holder = engine.redis.get(_GATE + job_id)
    if holder is not None and _text(holder) == digest:
        return 202, {"ok": True, "status": "coalesced"}
    if engine.redis.set(_TRAIL + job_id, "1", nx=True, px=window_ms):
        engine.send(WEBHOOK_TASK, job_id, hint, 0, claim, countdown=window_ms / 1000)
        return 202, {"ok": True, "status": "accepted"}
    return 202, {"ok": True, "status": "coalesced"}
