"""What the webhook tests share: the secret, a fake provider, and ways to set a job's state and deliver a webhook in this process."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from tests.pipeline_helpers import RecordingEngine
from worker.job.callback import token_for
from worker.job.record import Job, JobState
from worker.web.receiver import handle_webhook

SECRET = "test-webhook-secret-F5x5cGfW3ZXlII0HfDYRorz5jenEQcAi"
KEY = "sk-test-webhooks"
MODEL = "doubao-seedance-2-0-fast-260128"
S = JobState


class Provider:
    """A fake provider: answers ``GET /video/generations/{id}`` from ``tasks``; records calls."""

    def __init__(self) -> None:
        self.tasks: dict[str, dict[str, Any]] = {}
        self.requests: list[httpx.Request] = []
        self.fail_with: int | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.fail_with is not None:
            return httpx.Response(self.fail_with, json={"error": {"message": "down"}})
        task_id = request.url.path.rsplit("/", 1)[-1]
        if request.method == "GET" and task_id in self.tasks:
            return httpx.Response(200, json=self.tasks[task_id])
        return httpx.Response(404, json={"error": {"message": "no such task"}})

    def task(self, task_id: str, status: str, *, model: str = MODEL, seconds: int = 5) -> None:
        url = f"https://cdn.provider.test/{task_id}.mp4?sig=abc" if status == "succeeded" else None
        self.tasks[task_id] = {
            "task_id": task_id,
            "status": status,
            "model": model,
            "seconds": str(seconds),
            "url": url,
        }


def _set(engine: RecordingEngine, job_id: str, state: JobState, **fields: object) -> Job:
    applied, _ = engine.store._change(job_id, states=None, to=state, set=fields or None)
    assert applied
    job = engine.store.get(job_id)
    assert job is not None
    return job


def _in_doubt(engine: RecordingEngine, job_id: str, **fields: object) -> Job:
    """A job whose first submission (claim 0) left and whose reply was never recorded."""
    return _set(engine, job_id, S.SUBMITTING, submit_attempts=1, submit_claim=0,
                billing="pending", submit_intent_at=time.time(), **fields)  # fmt: skip


def _hook(
    engine: RecordingEngine, job_id: str, body: Any, **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    token = kwargs.pop("token", token_for(SECRET, job_id))
    content_type = kwargs.pop("content_type", "application/json")
    return handle_webhook(job_id, token, raw, content_type, engine=engine, **kwargs)
