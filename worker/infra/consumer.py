"""The worker's consumer: back on the broker within seconds of Redis answering again.

Celery's consumer reconnects on kombu's default schedule, each wait 2 s longer than the
last up to 30 s (it tries 2, 6, 12, 20, 30, 42 ... s after it lost the broker). After a
Sentinel election or a restart, a worker could so take messages again many seconds after
Redis answers, while its own sweep already moves jobs whose messages then wait. This
consumer tries again after half a second, then never more than :data:`RECONNECT_MAX`
seconds apart: a try costs one refused connection (or one question to the sentinels).
"""

from __future__ import annotations

import functools
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer

__all__ = ["RECONNECT_MAX", "Consumer"]

RECONNECT_MAX = 2.0  # seconds between tries to reach the broker, at most


class Consumer(CeleryConsumer):  # type: ignore[misc]
    """Celery's consumer, reconnecting to the broker at most 2 s apart."""

    def ensure_connected(self, conn: Any) -> Any:
        """Connect as Celery does, with a short and capped retry interval."""
        if not isinstance(conn.ensure_connection, functools.partial):  # once per connection
            conn.ensure_connection = functools.partial(
                conn.ensure_connection, interval_start=0.5, interval_step=0.5,
                interval_max=RECONNECT_MAX,
            )  # fmt: skip
        return super().ensure_connected(conn)
