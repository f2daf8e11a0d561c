"""The Celery configuration, derived from the settings and nothing else."""

from __future__ import annotations

from typing import Any

from kombu.entity import Exchange, Queue

from config import task_names as names
from config.redis_url import DEFAULT_REDIS_URL, parse_sentinel_url
from config.settings import Settings

__all__ = [
    "DELIVERY_QUEUE",
    "DELIVERY_TASKS",
    "QUEUE",
    "STEP_TIME_LIMITS",
    "celery_config",
    "visibility_timeout",
]

QUEUE = "relaydance"
# Work after generation has its own queue, so that a burst of submissions (or polls)
# never holds back a clip that is ready: every worker consumes both queues unless told
# otherwise (`-Q relaydance.delivery` makes a delivery-only worker), and Celery's Redis
# transport takes from them in turn.
DELIVERY_QUEUE = "relaydance.delivery"
DELIVERY_TASKS = (
    names.WEBHOOK,
    names.DOWNLOAD,
    names.FINISH,
    names.NOTIFY,
    names.BATCH_JOB_DONE,
)

# Soft time limit of each task, in seconds; the hard limit is 30 s above it. The download
# (and the webhook task, which may download) get the overall download timeout instead: a
# large clip on a slow link is not a hung task. Others have the default soft limit.
STEP_TIME_LIMITS = {
    names.PREPARE: 300.0,
    names.SUBMIT: 60.0,
    names.POLL: 60.0,
    names.FINISH: 30.0,
    names.SWEEP: 60.0,
    names.RESUME: 30.0,
    names.GRANT: 30.0,
    names.NOTIFY: 30.0,
}


def visibility_timeout(settings: Settings) -> int:
    """Seconds before the Redis broker re-delivers an unacknowledged message.

    It must be well above the longest countdown a message waits on a worker (a poll's
    next interval, the first safety poll in webhook mode, a rate-limit deferral), or the
    broker would hand the same message to a second worker while the first still holds it.
    The sweeper, not this timeout, is what bounds the stall after a killed worker.
    """
    longest = max(
        settings.poll_interval_max,
        settings.poll_first_delay or 0.0,
        settings.webhook_safety_poll_seconds,
        settings.download_timeout,
        settings.poll_deadline_seconds / 4,
    )
    return int(max(3600.0, 4 * longest))


def celery_config(settings: Settings) -> dict[str, Any]:
    """Every Celery setting the fleet uses; the Celery app loads this lazily."""
    url = settings.redis_url or DEFAULT_REDIS_URL
    return {
        **_broker_config(settings, url),
        **_task_config(settings),
        **_beat_config(settings, url),
    }


def _broker_config(settings: Settings, url: str) -> dict[str, Any]:
    """The broker and the result backend: one Redis, reached directly or through sentinels."""
    transport: dict[str, Any] = {"visibility_timeout": visibility_timeout(settings)}
    if url.startswith("sentinel"):
        # Celery's transport and result backend follow the master through the sentinels.
        transport["master_name"] = settings.redis_sentinel_master
    return {
        "broker_url": url,
        # kombu's Redis transports, reusing one Redis client per channel (worker/infra/broker.py).
        "broker_transport": (
            "worker.infra.broker:SentinelTransport"
            if url.startswith("sentinel")
            else "worker.infra.broker:Transport"
            if url.startswith("redis://")
            else None
        ),
        "result_backend": url,
        "broker_connection_retry_on_startup": True,
        # A worker never gives up on the broker: a Redis outage is a pause, however long.
        "broker_connection_max_retries": None,
        "broker_transport_options": transport,
        "result_backend_transport_options": dict(transport),
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_expires": settings.job_retention_seconds,
    }


def _task_config(settings: Settings) -> dict[str, Any]:
    """How tasks run: acked late, one at a time per process, within their time limits."""
    soft = settings.task_soft_time_limit
    annotations: dict[str, dict[str, float]] = {
        name: {"soft_time_limit": limit, "time_limit": limit + 30}
        for name, limit in STEP_TIME_LIMITS.items()
    }
    # The download gets the overall download timeout, and so does the webhook task, which
    # downloads a clip it has just verified with the URL the provider gave it.
    for long_step in (names.DOWNLOAD, names.WEBHOOK):
        annotations[long_step] = {
            "soft_time_limit": settings.download_timeout + 30,
            "time_limit": settings.download_timeout + 60,
        }
    return {
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": soft,
        "task_time_limit": soft + 30,
        "task_annotations": annotations,
        "task_ignore_result": True,  # the job record is the result
        "task_default_queue": QUEUE,
        "task_queues": [Queue(q, Exchange(q), routing_key=q) for q in (QUEUE, DELIVERY_QUEUE)],
        "task_routes": {name: {"queue": DELIVERY_QUEUE} for name in DELIVERY_TASKS},
        "worker_send_task_events": settings.task_events,
        # Flower builds its task list from the workers' events; "sent" events from every
        # producer (including each poll's countdown re-send) would only add CPU and traffic.
        "task_send_sent_event": False,
        # Back on the broker within 2 s of Redis answering again (worker/infra/consumer.py).
        "worker_consumer": "worker.infra.consumer:Consumer",
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "include": [
            "worker.job.worker_signals",
            "tasks.render",
            "tasks.webhooks",
            "tasks.batches",
        ],
    }


def _beat_config(settings: Settings, url: str) -> dict[str, Any]:
    """Beat: the users' schedules, kept in Redis by celery-redbeat.

    The sweep is not beat's: every worker runs it (worker/job/sweep_loop.py), so jobs keep
    moving whatever happens to beat. Beat's scheduler waits out Redis restarts and
    failovers instead of exiting (worker/infra/beat.py).
    """
    loop = min(5.0, settings.sweep_interval_seconds)
    redbeat: dict[str, Any] = {"redbeat_redis_url": url, "redbeat_redis_options": {}}
    if url.startswith("sentinel"):
        # redbeat takes the broker's sentinels in its own option format.
        parsed = parse_sentinel_url(url)
        redbeat = {
            "redbeat_redis_url": "redis-sentinel://",
            "redbeat_redis_options": {
                "sentinels": parsed.sentinels,
                "service_name": settings.redis_sentinel_master,
                "password": parsed.password,
                "db": parsed.db,
            },
        }
    return {
        # No static entry: redbeat drops the sweep entry an earlier release installed.
        "beat_schedule": {},
        # Schedules live in Redis (celery-redbeat); its lock keeps one beat active.
        "beat_scheduler": "worker.infra.beat:Scheduler",
        # Celery's name for the longest beat sleep; redbeat also waits this long between
        # tries for its lock, so a restarted beat takes over soon after the old lock lapses.
        "beat_max_loop_interval": loop,  # new schedules are seen within 5 s
        **redbeat,
        "redbeat_lock_timeout": max(2, round(6 * loop)),  # a dead beat's lock: 30 s
    }
