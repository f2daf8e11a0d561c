"""The inspection endpoints under ``/_sim``: health, stats, config, reset, task debug view.

They need no API key: the simulator is a local test double, and nothing here reveals a
key (keys appear only as the first 8 hex digits of their sha256).
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from simulator.api import error
from simulator.config import SimConfigError
from simulator.core import Simulator
from simulator.media import VIDEO_SHA256
from simulator.store import fingerprint

__all__ = ["routes"]


def _sim(request: Request) -> Simulator:
    sim: Simulator = request.app.state.sim
    return sim


async def health(request: Request) -> Response:
    """``GET /_sim/health``: 200 once the app serves."""
    return JSONResponse({"ok": True, "video_sha256": VIDEO_SHA256})


async def stats(request: Request) -> Response:
    """``GET /_sim/stats``: every counter."""
    sim = _sim(request)
    body = sim.store.snapshot(sim.clock())
    body["uploads_stored"] = len(sim.uploads)
    body["webhooks_pending"] = sim.webhooks.pending
    body["credits_left"] = sim.credits_left
    body["image_downloads"] = sim.store.counters["image_downloads"]
    body["stale_inputs"] = sim.store.counters["stale_inputs"]  # clips citing an expired url
    body.update(sim.images.stats())
    return JSONResponse(body)


async def config(request: Request) -> Response:
    """``GET /_sim/config`` shows the knobs; ``POST`` (partial JSON) changes them."""
    sim = _sim(request)
    if request.method == "POST":
        try:
            changes = json.loads(await request.body() or b"{}")
        except json.JSONDecodeError:
            return error(400, "body must be a JSON object of knobs")
        if not isinstance(changes, dict):
            return error(400, "body must be a JSON object of knobs")
        try:
            sim.configure(changes)
        except SimConfigError as exc:
            return error(400, str(exc))
    return JSONResponse(sim.config.model_dump())


async def reset(request: Request) -> Response:
    """``POST /_sim/reset``: forget tasks and counters, keep the knobs."""
    _sim(request).reset()
    return JSONResponse({"ok": True})


async def task_debug(request: Request) -> Response:
    """``GET /_sim/tasks/{task_id}``: the task's internals, for tests."""
    sim = _sim(request)
    task = sim.store.tasks.get(request.path_params["task_id"])
    if task is None:
        return error(404, "no such task", kind="not_found_error")
    return JSONResponse(
        {
            "task_id": task.task_id,
            "dialect": task.dialect,
            "status": task.status(sim.clock()),
            "key": fingerprint(task.owner),
            "model": task.model,
            "seconds": task.seconds,
            "idempotency_key": task.idempotency_key,
            "has_callback": task.callback_url is not None,
            "created_at": task.created_at,
            "start_at": task.start_at,
            "ready_at": task.ready_at,
            "will_fail": task.failed,
            "input_urls": list(task.input_urls),
        }
    )


async def by_idempotency_key(request: Request) -> Response:
    """``GET /_sim/idempotency/{key}``: every task created under one Idempotency-Key,
    with the media URLs its body cited (what a test checks a clip was made from)."""
    sim = _sim(request)
    key = request.path_params["key"]
    tasks = [
        {
            "task_id": t.task_id,
            "failed": t.failed,
            "created_at": t.created_at,
            "input_urls": list(t.input_urls),
        }
        for t in sim.store.tasks.values()
        if t.idempotency_key == key
    ]
    return JSONResponse({"idempotency_key": key, "tasks": tasks})


def routes() -> list[Route]:
    """The routes mounted at ``/_sim``."""
    return [
        Route("/health", health, methods=["GET"]),
        Route("/stats", stats, methods=["GET"]),
        Route("/config", config, methods=["GET", "POST"]),
        Route("/reset", reset, methods=["POST"]),
        Route("/tasks/{task_id}", task_debug, methods=["GET"]),
        Route("/idempotency/{key}", by_idempotency_key, methods=["GET"]),
    ]
