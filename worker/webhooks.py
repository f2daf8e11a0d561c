"""Webhooks: the callback URL a job carries, and the one handler every web adapter calls.

The URL is ``<base>/<job id>/<token>`` with token = HMAC-SHA256(secret, job id), so the
path itself authenticates the caller: the provider documents no signature. The handler
is framework-agnostic (``worker.web`` serves it with Starlette, ``worker.integrations``
mounts it in Flask and Django) and does as little as it can, fast:

    token wrong, job unknown            -> 404, nothing changes
    body over MAX_BODY_BYTES            -> 413
    not application/json                -> 415
    not a JSON object, bad task id      -> 400 (the id read by the job's provider dialect)
    a job with nothing left to learn    -> 200, ignored (duplicates, stale deliveries)
    otherwise                           -> 202, ``relaydance.webhook`` enqueued

The body is never trusted: its task id is only a hint. The ``relaydance.webhook`` task
(:mod:`worker.webhook_step`) re-fetches that task with the job's own key before the job
moves, and the download step fetches the url from the provider again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from typing import Any

import redis
from kombu.exceptions import KombuError

from config.settings import Settings
from worker.dialects import Dialect
from worker.engine import Engine, get_engine
from worker.jobs import JobState

__all__ = [
    "MAX_BODY_BYTES",
    "WEBHOOK_TASK",
    "callback_url_for",
    "handle_webhook",
    "is_json_content_type",
    "receiver_health",
    "task_id_hint",
    "token_for",
    "verify_token",
]

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024  # a task JSON is well under 2 KiB
WEBHOOK_TASK = "relaydance.webhook"

_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TOKEN = re.compile(r"[0-9a-f]{64}")
_TASK_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
# States in which a verified webhook can still move the job.
_LISTENING = frozenset({JobState.SUBMITTING, JobState.SUBMITTED, JobState.RUNNING})

Reply = tuple[int, dict[str, Any]]
_NOT_FOUND: Reply = (404, {"ok": False, "error": "not found"})


def token_for(secret: str, job_id: str) -> str:
    """The callback token of a job."""
    return hmac.new(secret.encode(), job_id.encode(), hashlib.sha256).hexdigest()


def verify_token(secret: str, job_id: str, token: str) -> bool:
    """Whether ``token`` is the job's token, compared in constant time."""
    return hmac.compare_digest(token_for(secret, job_id).encode(), token.encode())


def callback_url_for(settings: Settings, job_id: str) -> str | None:
    """The job's ``metadata.callback_url``, or None when webhooks are off."""
    if not settings.webhook_base_url or settings.webhook_secret is None:
        return None
    token = token_for(settings.webhook_secret.get_secret_value(), job_id)
    return f"{settings.webhook_base_url}/{job_id}/{token}"


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
    if not _JOB_ID.fullmatch(job_id) or not _TOKEN.fullmatch(token):
        return _NOT_FOUND
    if not verify_token(secret.get_secret_value(), job_id, token):
        logger.warning("webhook for job %s refused: wrong token", job_id)
        return _NOT_FOUND
    if len(body) > MAX_BODY_BYTES:
        return 413, {"ok": False, "error": f"body larger than {MAX_BODY_BYTES} bytes"}
    if not is_json_content_type(content_type):
        return 415, {"ok": False, "error": "content type must be application/json"}
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return 400, {"ok": False, "error": "body is not valid JSON"}
    if not isinstance(payload, dict):
        return 400, {"ok": False, "error": "body must be a JSON object"}
    try:
        return _dispatch(engine, job_id, payload)
    except (redis.RedisError, KombuError, OSError) as exc:
        # The provider retries a failed delivery; the safety poll covers the rest.
        logger.warning("webhook for job %s not taken: %s", job_id, type(exc).__name__)
        return 503, {"ok": False, "error": "temporarily unavailable"}


def receiver_health(*, engine: Engine | None = None) -> Reply:
    """Answer ``GET <mount>/healthz``: 200 when Redis answers, which taking a webhook needs.

    Workers call it through the public base URL at start (:mod:`worker.webhook_health`).
    """
    try:
        (engine or get_engine()).redis.ping()
    except (redis.RedisError, OSError) as exc:
        return 503, {"ok": False, "redis": type(exc).__name__}
    return 200, {"ok": True}


def _dispatch(engine: Engine, job_id: str, payload: dict[str, Any]) -> Reply:
    job = engine.store.get(job_id)
    if job is None:
        return _NOT_FOUND
    from worker.webhook_step import may_have_orphan  # the task's module builds on this one

    try:
        # Each provider shapes its webhook its own way: the job's dialect reads it.
        hint = task_id_hint(payload, dialect=engine.client_for(job.alias).dialect)
    except ValueError as exc:
        return 400, {"ok": False, "error": str(exc)}
    recorded = job.remote_task_id
    # A task id other than the recorded one is the first submission of an ambiguous
    # submit, or a duplicate spend: the task decides which, after re-fetching it. A final
    # job listens only for the task of a submission it never recorded.
    unrecorded = hint is not None and hint != recorded
    if (job.is_final or recorded is None) and not may_have_orphan(job):
        logger.debug("job %s: webhook ignored, job is %s", job_id, job.state)
        return 200, {"ok": True, "status": "ignored"}
    if not unrecorded and (recorded is None or job.state not in _LISTENING):
        logger.debug("job %s: webhook ignored, job is %s", job_id, job.state)
        return 200, {"ok": True, "status": "ignored"}
    engine.send(WEBHOOK_TASK, job_id, hint)
    logger.info("job %s: webhook accepted (task %s)", job_id, hint or recorded)
    return 202, {"ok": True, "status": "accepted"}
