"""Kinovi's endpoints, mounted at ``/api/v1``: ``POST /jobs/createTask``, ``GET
/jobs/recordInfo``.

Every fault and limit is the simulator's own, shared with RelayDance's routes: the
guard (:func:`simulator.api.guarded`: authentication, injected 5xx, latency, trickled
replies), the per-key ``concurrency_cap`` with its 429, :meth:`Simulator.replay` for
``honour_idempotency``, :meth:`Simulator.submission_fault` for dropped replies and 5xx
after the task exists, and the billing counters. Only the spelling is Kinovi's: bodies
from :mod:`simulator.kinovi_format`, errors as ``{"message": ...}``, a 403 for another
key's task.
"""

from __future__ import annotations

import hashlib
import json
import re

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from simulator.api import base_url, guarded, read_json
from simulator.core import Simulator
from simulator.faults import DroppedReply, GatewayPage
from simulator.kinovi_format import record, validate_create
from simulator.validation import Refusal

__all__ = ["kinovi_error", "routes"]

_TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def kinovi_error(status: int, message: str, *, headers: dict[str, str] | None = None) -> Response:
    """Kinovi's error body: ``{"message": "..."}``."""
    return JSONResponse({"message": message}, status_code=status, headers=headers)


def _refuse(status: int, message: str) -> Response:
    return kinovi_error(status, message)


async def create_task(request: Request, sim: Simulator, owner: str) -> Response:
    """``POST /api/v1/jobs/createTask``."""
    store = sim.store
    try:
        body = await read_json(request)
        body_hash = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        idem = request.headers.get("idempotency-key") or None
        found = sim.replay(owner, idem)
        if found is not None:
            task, original_hash = found
            if original_hash != body_hash:
                return kinovi_error(409, "Idempotency-Key was already used with a different body")
            store.note_duplicate(task)
            return JSONResponse({"taskId": task.task_id})
        valid = validate_create(body)
    except Refusal as exc:
        store.counters["bad_requests"] += 1
        return kinovi_error(400, f"Invalid parameters: {exc.message}")
    refused = sim.account_refusal(valid.model, dialect="kinovi")
    if refused is not None:
        return kinovi_error(*refused)
    cap = sim.config.concurrency_cap
    if cap and store.in_flight(owner, sim.clock()) >= cap:
        store.counters["rate_limited"] += 1
        store.keys[owner].rate_limited += 1
        # Kinovi documents no Retry-After; the simulator's knob is sent on both dialects so
        # that a scaled clock keeps the fleet's timers in their real order.
        return kinovi_error(
            429, "Too many tasks in progress, wait for some to complete",
            headers={"Retry-After": sim.retry_after(owner)},
        )  # fmt: skip
    task = sim.create_task(
        valid, owner=owner, idempotency_key=idem, body_hash=body_hash,
        base_url=base_url(request, sim),
    )  # fmt: skip
    sim.spend_credit()
    fault = sim.submission_fault()
    if fault == "drop":
        return DroppedReply()
    if fault == "error":
        # The task exists and will be billed; only the answer is lost behind a gateway.
        return GatewayPage()
    return JSONResponse({"taskId": task.task_id})


async def record_info(request: Request, sim: Simulator, owner: str) -> Response:
    """``GET /api/v1/jobs/recordInfo?taskId=...``."""
    sim.store.counters["polls"] += 1
    task_id = request.query_params.get("taskId", "")
    if not _TASK_ID.fullmatch(task_id):
        sim.store.counters["bad_requests"] += 1
        return kinovi_error(400, "Invalid taskId")
    task = sim.store.tasks.get(task_id)
    if task is None or task.dialect != "kinovi":
        sim.store.counters["not_found"] += 1
        return kinovi_error(404, "Task not found")
    if task.owner != owner:
        sim.store.counters["forbidden"] += 1
        return kinovi_error(403, "Access denied: you can only query your own tasks")
    status = task.status(sim.clock())
    url = None
    if status == "succeeded":
        url = sim.signed_url(base_url(request, sim), f"videos/{task.task_id}.mp4")
    return JSONResponse(record(task, status=status, url=url, factor=sim.config.billed_factor))


def routes() -> list[Route]:
    """The routes mounted at ``/api/v1``."""
    return [
        Route("/jobs/createTask", guarded(create_task, dialect="kinovi", refuse=_refuse),
              methods=["POST"]),
        Route("/jobs/recordInfo", guarded(record_info, dialect="kinovi", refuse=_refuse),
              methods=["GET"]),
    ]  # fmt: skip
