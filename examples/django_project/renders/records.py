"""The app's own ``on_done`` task: record how each render ended (done, failed or canceled)
in a SQLite file. Delivery is at least once: the row is keyed by job id, so a repeated
summary (same ``dedupe_key``) replaces the row with the same content.

It runs in the Celery worker (``-I renders.records`` with this project on the path, or
``-I examples.django_project.renders.records`` from the repository root) and is
registered on the fleet's app ``worker.app``. It imports nothing of Django, so the worker
needs no Django settings; the views read the same file.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from config.settings import get_settings
from worker import app

__all__ = ["TASK_NAME", "database_path", "record_render", "recorded"]

TASK_NAME = "example.django.record_render"

_SCHEMA = """
create table if not exists renders (
    job_id text primary key,
    state text not null,
    recorded_at real not null,
    summary text not null
)
"""


def database_path() -> Path:
    """``EXAMPLE_RECORDS_DB``, else ``django-example.sqlite3`` in the output directory."""
    configured = os.environ.get("EXAMPLE_RECORDS_DB")
    if configured:
        return Path(configured)
    return Path(get_settings().output_dir) / "django-example.sqlite3"


def _connect() -> sqlite3.Connection:
    path = database_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=10)
    connection.execute(_SCHEMA)
    return connection


@app.task(name=TASK_NAME)
def record_render(summary: dict[str, Any]) -> None:
    """Store the summary the worker sends when a job ends, whatever its final state."""
    connection = _connect()
    try:
        with connection:
            connection.execute(
                "insert or replace into renders values (?, ?, ?, ?)",
                (summary["job_id"], summary["state"], time.time(), json.dumps(summary)),
            )
    finally:
        connection.close()


def recorded(job_id: str) -> dict[str, Any] | None:
    """The stored summary of a job that ended, or None."""
    if not database_path().exists():
        return None
    connection = _connect()
    try:
        row = connection.execute(
            "select summary, recorded_at from renders where job_id = ?", (job_id,)
        ).fetchone()
    finally:
        connection.close()
    if row is None:
        return None
    return {**json.loads(row[0]), "recorded_at": row[1]}
