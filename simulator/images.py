"""RelayDance's ``POST /v1/images/generations``: synchronous, OpenAI-style, with faults.

The request is checked as the Generate Image page describes it (``model``, ``prompt``,
``n`` default 1, ``size`` "model-dependent"), by the image catalogue's sizes and ``n``
bounds (:mod:`worker.render.image_catalogue`), and refused 400 in the provider's error JSON,
naming the field. An accepted request makes its images and bills them at once, then
answers ``{"created", "data": [{"url"}, ...]}``; each url serves a real PNG of the size
asked for (:mod:`simulator.stills`).

The faults are video's: outage, revoked keys and injected 5xx answer before any work (the
provider's JSON: nothing billed, see :func:`simulator.api.guarded`); ``credit_clips`` is
spent one unit per image and refuses 403 when too little is left; a lost reply
(``lost_response_rate``: a gateway's HTML 502; ``drop_reply_every``: a cut connection)
comes after the images were made and billed. Images count against ``concurrency_cap``: a
request is refused 429 while the key has that many generations in progress, and is itself
one in progress while it generates (``image_gen_time``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from simulator.api import base_url, error, read_json, v1
from simulator.core import Simulator
from simulator.faults import DroppedReply, GatewayPage
from simulator.stills import ImageRecord, image_png
from simulator.validation import MAX_PROMPT_CHARS, Refusal
from worker.render.image_catalogue import IMAGE_MODELS

__all__ = ["ImageAsk", "generate", "routes", "validate_images"]


@dataclass(frozen=True, slots=True)
class ImageAsk:
    """An accepted image request: what to make."""

    model: str
    n: int
    width: int
    height: int
    b64: bool


def validate_images(body: Any) -> ImageAsk:
    """The request, checked as the provider would; raises :class:`Refusal` (400)."""
    if not isinstance(body, dict):
        raise Refusal("body", "must be a JSON object")
    name = body.get("model")
    if not isinstance(name, str) or not name.strip():
        raise Refusal("model", "is required, e.g. 'grok-imagine-image'")
    model = IMAGE_MODELS.get(name)
    if model is None:
        raise Refusal("model", f"unknown image model {name!r}; known: "
                      f"{', '.join(sorted(IMAGE_MODELS))}")  # fmt: skip
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise Refusal("prompt", "is required")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise Refusal("prompt", f"must be at most {MAX_PROMPT_CHARS} characters")
    n = body.get("n", 1)
    if not isinstance(n, int) or isinstance(n, bool) or not model.min_n <= n <= model.max_n:
        raise Refusal("n", f"must be a whole number from {model.min_n} to {model.max_n} "
                      f"for {model.id}")  # fmt: skip
    size = body.get("size", model.default_size)
    if size not in model.sizes:
        raise Refusal("size", f"{model.id} takes sizes {', '.join(model.sizes)}; got {size!r}")
    fmt = body.get("response_format", "url")
    if fmt not in ("url", "b64_json"):
        raise Refusal("response_format", "must be 'url' or 'b64_json'")
    width, _, height = str(size).partition("x")
    return ImageAsk(model.id, n, int(width), int(height), fmt == "b64_json")


def _answer(sim: Simulator, records: list[ImageRecord], base: str, *, b64: bool) -> Response:
    """The documented reply: ``{"created", "data": [{"url"}]}`` (or ``b64_json`` items)."""
    if b64:
        items = [{"b64_json": base64.b64encode(image_png(r.image_id, r.width, r.height)).decode()}
                 for r in records]  # fmt: skip
    else:
        items = [{"url": sim.signed_url(base, f"images/{r.image_id}.png")} for r in records]
    return JSONResponse({"created": int(sim.clock()), "data": items})


def _refused(sim: Simulator, ask: ImageAsk, owner: str) -> Response | None:
    """The account's or the key's refusal of the request, if any (nothing is billed)."""
    refused = sim.account_refusal(ask.model, dialect="relaydance", units=ask.n)
    if refused is not None:
        kind = "insufficient_quota" if "balance" in refused[1] else "permission_error"
        return error(refused[0], refused[1], kind=kind)
    cap = sim.config.concurrency_cap
    if cap and sim.store.in_flight(owner, sim.clock()) >= cap:
        sim.store.counters["rate_limited"] += 1
        sim.store.keys[owner].rate_limited += 1
        return error(
            429, f"too many generations in progress for this key (limit {cap}); retry later",
            kind="rate_limit_error", headers={"Retry-After": sim.retry_after(owner)},
        )  # fmt: skip
    return None


def _make(
    sim: Simulator, ask: ImageAsk, owner: str, idem: str | None, body_hash: str
) -> list[ImageRecord]:
    """Make and bill the images; they count as in progress for the generation time."""
    now = sim.clock()
    records = [ImageRecord(sim.new_id("img"), owner, ask.model, ask.width, ask.height, now)
               for _ in range(ask.n)]  # fmt: skip
    sim.images.add(records, idempotency_key=idem, body_hash=body_hash)
    sim.spend_credit(ask.n)
    sim.store.counters["images"] += ask.n
    sim.store.occupy(owner, until=now + sim.config.image_gen_time * sim.config.time_scale, now=now)
    return records


async def generate(request: Request, sim: Simulator, owner: str) -> Response:
    """``POST /v1/images/generations``."""
    try:
        body = await read_json(request)
        ask = validate_images(body)
    except Refusal as exc:
        sim.store.counters["bad_requests"] += 1
        return error(400, exc.message, param=exc.param)
    body_hash = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    idem = request.headers.get("idempotency-key") or None
    base = base_url(request, sim)
    found = sim.images.replay(owner, idem) if sim.config.honour_idempotency else None
    if found is not None:
        if found[1] != body_hash:
            return error(409, "Idempotency-Key was already used with a different body")
        sim.store.counters["duplicates"] += 1
        records = [r for r in map(sim.images.get, found[0]) if r is not None]
        return _answer(sim, records, base, b64=ask.b64)
    refused = _refused(sim, ask, owner)
    if refused is not None:
        return refused
    records = _make(sim, ask, owner, idem, body_hash)
    if sim.config.image_gen_time > 0:
        await asyncio.sleep(sim.config.image_gen_time * sim.config.time_scale)
    fault = sim.image_fault()
    if fault == "drop":
        return DroppedReply()
    if fault == "error":
        return GatewayPage()  # the images exist and are billed; only the answer is lost
    return _answer(sim, records, base, b64=ask.b64)


def routes() -> list[Route]:
    """The image route mounted at ``/v1`` beside :func:`simulator.api.routes`."""
    return [Route("/images/generations", v1(generate), methods=["POST"])]
