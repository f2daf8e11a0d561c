"""RelayDance's ``/v1`` endpoints: submit, poll and upload (images: :mod:`simulator.images`).

:func:`guarded` holds what every dialect's routes share (authentication, injected 5xx,
latency, trickled replies); Kinovi's routes (:mod:`simulator.kinovi`) use it too.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from simulator.core import Simulator, Upload
from simulator.faults import DroppedReply, GatewayPage, TrickledReply
from simulator.multipart import MultipartError, parse_form
from simulator.validation import Refusal, ValidRequest, validate_submit

__all__ = ["base_url", "error", "guarded", "read_json", "routes", "v1"]

Handler = Callable[[Request, Simulator, str], Awaitable[Response]]


def error(
    status: int,
    message: str,
    *,
    kind: str = "invalid_request_error",
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """An OpenAI-style error body: ``{"error": {"message", "type", "param", "code"}}``."""
    body = {"error": {"message": message, "type": kind, "param": param, "code": status}}
    return JSONResponse(body, status_code=status, headers=headers)


def base_url(request: Request, sim: Simulator) -> str:
    """Scheme and host that handed-out urls start with: the knob, else the Host header."""
    if sim.config.public_url:
        return sim.config.public_url.rstrip("/")
    host = request.headers.get("host")
    if not host:
        server = request.scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    return f"{request.scope.get('scheme', 'http')}://{host}"


def _owner(header: str | None, prefix: str) -> str | None:
    if not header:
        return None
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key or not key.startswith(prefix):
        return None
    return hashlib.sha256(key.encode()).hexdigest()


Refuse = Callable[[int, str], Response]


def _refuse(status: int, message: str) -> Response:
    kinds = {401: "authentication_error", 404: "not_found_error"}
    return error(status, message, kind=kinds.get(status, "server_error"))


def guarded(
    handler: Handler, *, dialect: str, refuse: Refuse
) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a provider handler in what every dialect shares: the dialect switch,
    authentication, 5xx injection, added latency and trickled replies.

    ``refuse(status, message)`` writes an error body in the dialect's own shape.
    """

    async def endpoint(request: Request) -> Response:
        sim: Simulator = request.app.state.sim
        cfg = sim.config
        owner = _owner(request.headers.get("authorization"), cfg.required_key_prefix)
        if cfg.dialect not in ("both", dialect):
            return refuse(404, f"this simulator serves the {cfg.dialect} API only")
        if cfg.outage:
            sim.store.counters["outage_requests"] += 1
            response = refuse(503, "service temporarily unavailable; retry with back-off")
        elif owner is None:
            sim.store.counters["unauthorized"] += 1
            response = refuse(401, "missing or invalid API key; send Authorization: Bearer <key>")
        elif sim.revoked(owner):
            sim.store.counters["unauthorized"] += 1
            response = refuse(401, "invalid API key: this key has been revoked")
        elif sim.chance(cfg.error_5xx_rate):
            sim.store.counters["errors_5xx"] += 1
            response = refuse(sim.rng.choice((500, 502, 503)), "upstream temporarily unavailable")
        else:
            response = await handler(request, sim, owner)
        if cfg.latency > 0:
            await asyncio.sleep(cfg.latency)
        if cfg.trickle_seconds > 0 and not isinstance(response, DroppedReply):
            return TrickledReply(response, seconds=cfg.trickle_seconds)
        return response

    return endpoint


def v1(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a RelayDance /v1 handler (see :func:`guarded`)."""
    return guarded(handler, dialect="relaydance", refuse=_refuse)


async def read_json(request: Request) -> Any:
    """The request's JSON body; raises :class:`Refusal` (param ``body``) when it is not."""
    return await _json_body(request)


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise Refusal("body", "must be valid JSON") from None


def _fetchable(sim: Simulator, valid: ValidRequest) -> ValidRequest:
    """``valid``, if the provider can fetch every media url it cites (one of its own
    still urls that expired it cannot: refused, counted in ``stale_inputs``)."""
    stale = sim.stale_input(valid.input_urls)
    if stale is not None:
        sim.store.counters["stale_inputs"] += 1
        raise Refusal("metadata.content", stale)
    return valid


async def submit(request: Request, sim: Simulator, owner: str) -> Response:
    """``POST /v1/video/generations``."""
    store = sim.store
    try:
        body = await _json_body(request)
    except Refusal as exc:
        store.counters["bad_requests"] += 1
        return error(400, exc.message, param=exc.param)
    body_hash = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    idem = request.headers.get("idempotency-key") or None
    found = sim.replay(owner, idem)
    if found is not None:
        task, original_hash = found
        if original_hash != body_hash:
            return error(409, "Idempotency-Key was already used with a different body")
        store.note_duplicate(task)
        return JSONResponse({"task_id": task.task_id, "status": task.status(sim.clock())})
    try:
        valid = _fetchable(sim, validate_submit(body))
    except Refusal as exc:
        store.counters["bad_requests"] += 1
        return error(400, exc.message, param=exc.param)
    refused = sim.account_refusal(valid.model, dialect="relaydance")
    if refused is not None:
        kind = "insufficient_quota" if "balance" in refused[1] else "permission_error"
        return error(refused[0], refused[1], kind=kind)
    cap = sim.config.concurrency_cap
    if cap and store.in_flight(owner, sim.clock()) >= cap:
        store.counters["rate_limited"] += 1
        store.keys[owner].rate_limited += 1
        return error(
            429, f"too many tasks in progress for this key (limit {cap}); retry later",
            kind="rate_limit_error", headers={"Retry-After": sim.retry_after(owner)},
        )  # fmt: skip
    task = sim.create_task(
        valid,
        owner=owner,
        idempotency_key=idem,
        body_hash=body_hash,
        base_url=base_url(request, sim),
    )
    sim.spend_credit()
    fault = sim.submission_fault()
    if fault == "drop":
        return DroppedReply()
    if fault == "error":
        # The task exists and will be billed; only the answer is lost behind a gateway.
        return GatewayPage()
    return JSONResponse({"task_id": task.task_id, "status": "submitted"})


async def poll(request: Request, sim: Simulator, owner: str) -> Response:
    """``GET /v1/video/generations/{task_id}``."""
    sim.store.counters["polls"] += 1
    task = sim.store.get(request.path_params["task_id"], owner)
    if task is None or task.dialect != "relaydance":
        sim.store.counters["not_found"] += 1
        return error(404, "no such task", kind="not_found_error", param="task_id")
    return JSONResponse(sim.task_view(task, base_url(request, sim)))


async def upload(request: Request, sim: Simulator, owner: str) -> Response:
    """``POST /v1/files``: multipart field ``file``; answers the file object with its url."""
    limit = sim.config.max_upload_bytes
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit + 64 * 1024:  # room for the multipart framing
            return error(413, f"file too large; at most {limit} bytes", param="file")
    try:
        part = parse_form(bytes(body), request.headers.get("content-type", "")).get("file")
    except MultipartError as exc:
        sim.store.counters["bad_requests"] += 1
        return error(400, str(exc), param="file")
    if part is None or part.filename is None:
        sim.store.counters["bad_requests"] += 1
        return error(400, "multipart field 'file' with a filename is required", param="file")
    if len(part.data) > limit:
        return error(413, f"file too large; at most {limit} bytes", param="file")
    item = Upload(
        file_id=sim.new_id("file"),
        owner=owner,
        filename=part.filename,
        content_type=part.content_type,
        data=part.data,
        created_at=sim.clock(),
    )
    sim.uploads[item.file_id] = item
    sim.store.counters["uploads"] += 1
    return JSONResponse(
        {
            "id": item.file_id,
            "object": "file",
            "bytes": len(item.data),
            "created_at": int(item.created_at),
            "filename": item.filename,
            "content_type": item.content_type,
            "url": f"{base_url(request, sim)}/_files/uploads/{item.file_id}",
        }
    )


def routes() -> list[Route]:
    """The routes mounted at ``/v1``."""
    return [
        Route("/video/generations", v1(submit), methods=["POST"]),
        Route("/video/generations/{task_id}", v1(poll), methods=["GET"]),
        Route("/files", v1(upload), methods=["POST"]),
    ]
