"""A Celery app of a schedule test's own, and instants written as text.

Shared by the cron tests (tests/unit/) and the tests that store schedules in Redis and run
beats (tests/integration/).
"""

from __future__ import annotations

from datetime import UTC, datetime

from celery import Celery


def celery_app(url: str) -> Celery:
    """An app on ``url`` in UTC, not the current app, so redbeat's cached connection is its own."""
    app = Celery("schedules-test", set_as_current=False)
    app.conf.update(broker_url=url, redbeat_redis_url=url, redbeat_redis_options={}, timezone="UTC")
    return app


def at(text: str) -> datetime:
    """``2025-03-10T02:00`` as an aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)
