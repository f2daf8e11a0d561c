"""The file host: signed, expiring mp4 and PNG urls, optional redirects, and uploads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from simulator.api import error
from simulator.core import Simulator
from simulator.media import iter_video, video_size
from simulator.stills import image_png

__all__ = ["routes"]


def _refusal(request: Request, sim: Simulator, resource: str) -> Response | None:
    if sim.config.outage:  # the provider's file host is down with it
        sim.store.counters["outage_requests"] += 1
        return error(503, "service temporarily unavailable", kind="server_error")
    reason = sim.check_signature(
        resource, request.query_params.get("expires"), request.query_params.get("sig")
    )
    if reason is None:
        return None
    sim.store.counters["downloads_refused"] += 1
    return error(403, reason, kind="permission_error")


async def _chunks(total: int, *, seconds: int, rate: float = 0.0) -> AsyncIterator[bytes]:
    # A plain generator would be iterated in a worker thread; this keeps it on the loop.
    for chunk in iter_video(total, seconds=seconds):
        yield chunk
        if rate > 0:  # a slow link, to catch a worker mid-download
            await asyncio.sleep(len(chunk) / rate)


async def video(request: Request) -> Response:
    """``GET /_files/videos/{task_id}.mp4``: the clip, or a redirect to it."""
    sim: Simulator = request.app.state.sim
    task_id = request.path_params["task_id"]
    resource = f"videos/{task_id}.mp4"
    refused = _refusal(request, sim, resource)
    if refused is not None:
        return refused
    task = sim.store.tasks.get(task_id)
    if task is None or task.status(sim.clock()) != "succeeded":
        sim.store.counters["not_found"] += 1
        return error(404, "no such file", kind="not_found_error")
    target = sim.config.download_redirect
    if target and request.url.path.startswith("/_files/videos/"):
        sim.store.counters["redirects"] += 1
        if target == "self":
            target = f"/_files/blob/{resource}?{request.url.query}"
        return RedirectResponse(target, status_code=302)
    sim.store.counters["downloads"] += 1
    total = video_size(sim.config.video_bytes or None)
    return StreamingResponse(
        _chunks(total, seconds=task.seconds, rate=sim.config.download_rate),
        media_type="video/mp4",
        headers={"Content-Length": str(total), "Cache-Control": "private, max-age=0"},
    )


async def image(request: Request) -> Response:
    """``GET /_files/images/{image_id}.png``: the generated image, a PNG of its size."""
    sim: Simulator = request.app.state.sim
    image_id = request.path_params["image_id"]
    refused = _refusal(request, sim, f"images/{image_id}.png")
    if refused is not None:
        return refused
    record = sim.images.get(image_id)
    if record is None:
        sim.store.counters["not_found"] += 1
        return error(404, "no such file", kind="not_found_error")
    sim.store.counters["image_downloads"] += 1
    data = image_png(record.image_id, record.width, record.height)
    return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=0"})


async def uploaded(request: Request) -> Response:
    """``GET /_files/uploads/{file_id}``: an uploaded file, public like a CDN url."""
    sim: Simulator = request.app.state.sim
    item = sim.uploads.get(request.path_params["file_id"])
    if item is None:
        return error(404, "no such file", kind="not_found_error")
    return Response(item.data, media_type=item.content_type)


def routes() -> list[Route]:
    """The routes mounted at ``/_files``."""
    return [
        Route("/videos/{task_id}.mp4", video, methods=["GET"]),
        Route("/blob/videos/{task_id}.mp4", video, methods=["GET"]),
        Route("/images/{image_id}.png", image, methods=["GET"]),
        Route("/uploads/{file_id}", uploaded, methods=["GET"]),
    ]
