"""Is the webhook receiver reachable? Two signs, each logged loudly once.

1. A self-check: ``GET <RELAYDANCE_WEBHOOK_BASE_URL>/healthz`` when a worker starts (and in
   ``relaydance doctor``). Every receiver (``relaydance web``, the Flask blueprint, the
   Django include) answers it. A failure there means the provider cannot reach the
   receiver either, in all likelihood: jobs would sit until their late safety poll.
2. Jobs that end without their webhook: a job whose remote task finished (generated, or
   failed by the provider) while webhooks were on, and for which no webhook ever reached
   the fleet, counts as one missed delivery. The first one in an hour is logged as an
   error with what to check; the count is shown by ``relaydance status`` and ``doctor``.

A pass of the self-check proves less than a failure: the worker's host may reach a URL the
provider cannot. The missed-delivery count is what the provider really did.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import httpx
import redis

from config.settings import Settings
from worker.infra.timefmt import span
from worker.job.engine import Engine
from worker.job.failover import FAILOVER_POLL_FIELD
from worker.job.record import Job
from worker.job.states import LIVE_STATES
from worker.provider.urlsafety import redact_url

__all__ = [
    "HEALTH_PATH",
    "ReceiverCheck",
    "check_at_worker_start",
    "check_receiver",
    "healthz_url",
    "last_check",
    "missed_count",
    "note_final",
    "note_webhook_received",
]

logger = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"
RECEIVER_KEY = "rd:webhooks:receiver"  # the last self-check, as a hash
MISSED_KEY = "rd:webhooks:missed"  # missed deliveries: count, last job, last time
ALERT_KEY = "rd:webhooks:missed:alerted"  # set while the last loud line is recent
ALERT_EVERY = 3600.0
RECEIVED_FIELD = "webhook_at"


@dataclass(frozen=True)
class ReceiverCheck:
    """One self-check of the receiver through the configured public base URL."""

    ok: bool
    url: str
    detail: str
    checked_at: float


def healthz_url(base_url: str) -> str:
    """Where a receiver mounted at ``base_url`` answers its health check."""
    return base_url.rstrip("/") + HEALTH_PATH


def check_receiver(
    settings: Settings, *, timeout: float = 5.0, transport: httpx.BaseTransport | None = None
) -> ReceiverCheck | None:
    """GET the receiver's ``/healthz`` through the base URL; None when webhooks are off."""
    if not settings.webhook_base_url:
        return None
    url = healthz_url(settings.webhook_base_url)
    shown = redact_url(url)
    now = time.time()
    try:
        with httpx.Client(timeout=timeout, transport=transport, follow_redirects=False) as client:
            answer = client.get(url)
    except httpx.HTTPError as exc:
        return ReceiverCheck(False, shown, f"unreachable ({type(exc).__name__})", now)
    if answer.status_code != 200:
        return ReceiverCheck(False, shown, f"answered HTTP {answer.status_code}, not 200", now)
    try:
        healthy = answer.json().get("ok") is True
    except (ValueError, AttributeError):
        healthy = False
    if not healthy:
        return ReceiverCheck(False, shown, "answered, but not as a webhook receiver", now)
    return ReceiverCheck(True, shown, "answers", now)


def _record(client: redis.Redis, check: ReceiverCheck) -> None:
    client.hset(
        RECEIVER_KEY,
        mapping={
            "ok": "1" if check.ok else "0",
            "url": check.url,
            "detail": check.detail,
            "checked_at": repr(check.checked_at),
        },
    )


def last_check(client: redis.Redis) -> ReceiverCheck | None:
    """The fleet's last recorded self-check, or None."""
    raw = client.hgetall(RECEIVER_KEY)
    if not raw:
        return None
    data = {_text(k): _text(v) for k, v in raw.items()}
    return ReceiverCheck(
        ok=data.get("ok") == "1",
        url=data.get("url", ""),
        detail=data.get("detail", ""),
        checked_at=float(data.get("checked_at") or 0.0),
    )


def check_at_worker_start(engine: Engine) -> ReceiverCheck | None:
    """Self-check the receiver, record the result, and log loudly when it fails."""
    settings = engine.settings
    if not settings.webhook_base_url or not settings.webhook_self_check:
        return None
    check = check_receiver(settings)
    if check is None:
        return None
    try:
        _record(engine.redis, check)
    except redis.RedisError:  # the check is advice; a Redis outage is reported elsewhere
        logger.warning("could not record the webhook receiver check in Redis")
    if check.ok:
        logger.info("webhook receiver answers at %s", check.url)
    else:
        logger.error(
            "WEBHOOK RECEIVER UNREACHABLE: GET %s %s. The provider's webhooks will not "
            "arrive, so every job waits for its safety poll (%s after submission). Check "
            "that RELAYDANCE_WEBHOOK_BASE_URL is the public URL of the running receiver "
            "(`relaydance web`, or your app's mounted blueprint or include); "
            "`relaydance doctor` checks the whole setup.",
            check.url,
            check.detail,
            span(settings.webhook_safety_poll_seconds),
        )
    return check


def note_webhook_received(engine: Engine, job_id: str) -> None:
    """Mark on a job that a webhook (with a valid token) reached the fleet."""
    engine.store.update_fields(job_id, states=LIVE_STATES, set={RECEIVED_FIELD: repr(time.time())})


def _provider_finished(job: Job) -> bool:
    return "generated" in job.times or job.error_code == "generation_failed"


def note_final(engine: Engine, job: Job) -> bool:
    """Count a missed delivery when a webhook-mode job ended with no webhook; True if so."""
    base = engine.settings.webhook_base_url
    if not base or not job.remote_task_id or not _provider_finished(job):
        return False
    if job.webhook_at is not None or FAILOVER_POLL_FIELD in job.extra:
        return False  # received, or maybe received by a primary a failover lost
    pipe = engine.redis.pipeline(transaction=True)
    pipe.hincrby(MISSED_KEY, "count", 1)
    pipe.hset(MISSED_KEY, mapping={"last_job": job.id, "last_at": repr(time.time())})
    pipe.set(ALERT_KEY, job.id, nx=True, ex=int(ALERT_EVERY))
    count, _, first_in_a_while = pipe.execute()
    if first_in_a_while:
        logger.error(
            "WEBHOOKS ARE NOT ARRIVING: job %s ended without its webhook (%d such jobs so "
            "far). The provider cannot deliver to %s, so jobs wait for their safety poll "
            "(%s after submission). Check RELAYDANCE_WEBHOOK_BASE_URL and that the "
            "receiver is reachable from the provider; `relaydance doctor` checks it.",
            job.id,
            count,
            redact_url(healthz_url(base)).removesuffix(HEALTH_PATH),
            span(engine.settings.webhook_safety_poll_seconds),
        )
    else:
        logger.info("job %s ended without its webhook (%d such jobs so far)", job.id, count)
    return True


def missed_count(client: redis.Redis) -> int:
    """How many jobs ended without their webhook (since Redis was new)."""
    value = client.hget(MISSED_KEY, "count")
    return int(value) if value else 0


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
