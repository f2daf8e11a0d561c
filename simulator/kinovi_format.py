"""Kinovi's body format in the simulator: the createTask checks, its credits, its task JSON.

As strict as the RelayDance checks: a field Kinovi does not document is refused (so a
client that sends ``resolution`` for ``outputResolution``, or ``callBackUrl`` inside
``inputs``, finds out here), and so is every documented limit. Images and videos share
``urls``; a URL whose path ends in ``.mp4`` counts as a video, any other as an image.
No module here imports the simulator's core, which uses these views for webhooks.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from simulator.store import Task
from simulator.validation import Refusal, ValidRequest

__all__ = ["credits_for", "envelope", "record", "validate_create"]

MODELS = {"seedance-20": 40, "seedance2-fast": 28}  # credits per second, seed 003
UPSCALE_CREDITS = 28
RATIOS = ("16:9", "9:16", "1:1", "3:4", "4:3", "21:9")
RESOLUTIONS = ("720p", "480p")
MAX_PROMPT_CHARS = 4000
_TOP = frozenset({"model", "callBackUrl", "inputs"})
_INPUTS = frozenset({"urls", "audioUrls", "prompt", "duration", "aspectRatio", "mode",
                     "upscaleResolution", "outputResolution"})  # fmt: skip
_CITATION = re.compile(r"@(image|video|audio)(\d+)", re.IGNORECASE)
# What the simulated provider says of a failed generation: a content-policy refusal.
POLICY_FAILURE = {"code": "2038", "message": "Prompt flagged by content moderation"}
_STATUS = {"submitted": "waiting", "running": "generating", "succeeded": "success",
           "failed": "fail"}  # fmt: skip


def _is_url(value: Any) -> bool:
    if not isinstance(value, str) or not value:
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _urls(inputs: dict[str, Any], name: str) -> list[str]:
    value = inputs.get(name, [])
    if not isinstance(value, list) or not all(_is_url(v) for v in value):
        raise Refusal(f"inputs.{name}", "must be an array of public http(s) URLs")
    return value


def credits_for(model: str, seconds: int, *, resolution: str, upscale: bool) -> int:
    """Seed 003's list price in credits: per second, half at 480p, +28/s for the 4K upscale."""
    rate = MODELS[model] * (0.5 if resolution == "480p" else 1.0)
    return round((rate + (UPSCALE_CREDITS if upscale else 0)) * seconds)


def _options(inputs: dict[str, Any]) -> tuple[int, str, str, bool, str]:
    duration = inputs.get("duration", "5")
    if not isinstance(duration, str):
        raise Refusal("inputs.duration", 'must be a string such as "5", not a number')
    if not (duration.isascii() and duration.isdigit() and 4 <= int(duration) <= 15):
        raise Refusal("inputs.duration", f'must be "4" to "15"; got {duration!r}')
    ratio = inputs.get("aspectRatio", "16:9")
    if ratio not in RATIOS:
        raise Refusal("inputs.aspectRatio", f"must be one of {', '.join(RATIOS)}")
    resolution = inputs.get("outputResolution", "720p")
    if resolution not in RESOLUTIONS:
        raise Refusal("inputs.outputResolution", f"must be one of {', '.join(RESOLUTIONS)}")
    upscale = inputs.get("upscaleResolution")
    if upscale is not None and upscale != "4k":
        raise Refusal("inputs.upscaleResolution", 'must be "4k" when given')
    mode = inputs.get("mode", "keyframe")
    if mode not in ("keyframe", "reference"):
        raise Refusal("inputs.mode", "must be keyframe or reference")
    return int(duration), ratio, resolution, upscale is not None, mode


def _media(inputs: dict[str, Any], mode: str, prompt: str) -> None:
    urls, audio = _urls(inputs, "urls"), _urls(inputs, "audioUrls")
    videos = [u for u in urls if PurePosixPath(urlsplit(u).path).suffix.lower() == ".mp4"]
    counts = {"image": len(urls) - len(videos), "video": len(videos), "audio": len(audio)}
    if mode == "keyframe":
        if len(urls) > 2 or videos or audio:
            raise Refusal("inputs.urls", "keyframe mode takes 1 or 2 images and no audioUrls")
        if not urls and not prompt:
            raise Refusal("inputs.prompt", "is required for text-to-video")
        if _CITATION.search(prompt):
            raise Refusal("inputs.prompt", "@ references are only available in reference mode")
        return
    if not urls:
        raise Refusal("inputs.urls", "reference mode needs at least one image or video")
    if not prompt:
        raise Refusal("inputs.prompt", "is required in reference mode")
    for kind, limit in (("image", 9), ("video", 3), ("audio", 3)):
        if counts[kind] > limit:
            raise Refusal("inputs", f"at most {limit} {kind} references; got {counts[kind]}")
    for match in _CITATION.finditer(prompt):
        kind, number = match.group(1).lower(), int(match.group(2))
        if not 1 <= number <= counts[kind]:
            raise Refusal("inputs.prompt", f"{match.group(0)} cites a missing {kind}")


def validate_create(body: Any) -> ValidRequest:
    """Check a ``POST /api/v1/jobs/createTask`` body; raises :class:`Refusal`."""
    if not isinstance(body, dict):
        raise Refusal("body", "must be a JSON object")
    unknown = sorted(set(body) - _TOP)
    if unknown:
        raise Refusal(unknown[0], "unknown field; the body takes model, callBackUrl, inputs")
    model = body.get("model")
    if model not in MODELS:
        raise Refusal("model", f"must be one of {', '.join(MODELS)}")
    callback = body.get("callBackUrl")
    if callback is not None and not _is_url(callback):
        raise Refusal("callBackUrl", "must be an absolute http(s) URL")
    inputs = body.get("inputs")
    if not isinstance(inputs, dict):
        raise Refusal("inputs", "is required and must be an object")
    unknown = sorted(set(inputs) - _INPUTS)
    if unknown:
        raise Refusal(f"inputs.{unknown[0]}", f"unknown field; known: {', '.join(sorted(_INPUTS))}")
    prompt = inputs.get("prompt", "")
    if not isinstance(prompt, str) or len(prompt) > MAX_PROMPT_CHARS:
        raise Refusal("inputs.prompt", f"must be text of at most {MAX_PROMPT_CHARS} characters")
    seconds, ratio, resolution, upscale, mode = _options(inputs)
    _media(inputs, mode, prompt)
    return ValidRequest(
        model, seconds, ratio, resolution, False, callback, dialect="kinovi",
        credits=credits_for(model, seconds, resolution=resolution, upscale=upscale),
        input_urls=(*inputs.get("urls", []), *inputs.get("audioUrls", [])),
    )  # fmt: skip


def record(task: Task, *, status: str, url: str | None, factor: float = 1.0) -> dict[str, Any]:
    """The ``recordInfo`` task JSON at a (neutral) status; ``url`` when it succeeded."""
    kinovi = _STATUS[status]
    done = status in ("succeeded", "failed")
    return {
        "taskId": task.task_id,
        "model": task.model,
        "status": kinovi,
        "creditsUsed": round(task.credits * factor) if kinovi == "success" else 0,
        "output": [{"url": url, "width": 1280, "height": 720}] if url else [],
        "error": dict(POLICY_FAILURE) if kinovi == "fail" else None,
        "createTime": int(task.created_at * 1000),
        "completeTime": int(task.ready_at * 1000) if done else None,
    }


def envelope(
    task: Task, *, status: str, url: str | None, now: float, factor: float = 1.0
) -> dict[str, Any]:
    """The webhook body: ``{"code", "message", "data"}``, the status named ``state``."""
    data = record(task, status=status, url=url, factor=factor)
    data["state"] = data.pop("status")
    data["orderId"] = "order_" + task.task_id.removeprefix("task_")
    data["updateTime"] = int(now * 1000)
    return {"code": 200, "message": "success", "data": data}
