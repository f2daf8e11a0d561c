"""An on_done task for integration tests: a worker started with ``--include`` runs it."""

from __future__ import annotations

import json
from typing import Any

import redis

from config.settings import get_settings
from worker import app

TASK_NAME = "tests.record_on_done"
LIST_KEY = "test:on_done"


@app.task(name=TASK_NAME)
def record_on_done(summary: dict[str, Any]) -> None:
    """Append the summary to a Redis list the test reads."""
    client = redis.Redis.from_url(str(get_settings().redis_url))
    client.rpush(LIST_KEY, json.dumps(summary))
    client.close()
