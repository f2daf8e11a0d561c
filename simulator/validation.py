"""The checks the provider makes on a submit body, with the refusals it would answer 400 to.

The rules follow the provider pages (seeds 000-004) and the limits in
:mod:`worker.render.catalogue`; the first problem found is reported, naming the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from worker.render.catalogue import MODELS, Model

__all__ = ["MAX_PROMPT_CHARS", "Refusal", "ValidRequest", "validate_submit"]

MAX_PROMPT_CHARS = 4000
_KINDS = {"image_url": "image", "video_url": "video", "audio_url": "audio"}
_ROLES = {
    "image_url": ("reference_image", "first_frame", "last_frame"),
    "video_url": ("reference_video",),
    "audio_url": ("reference_audio",),
}
_CAPS = {"image": 9, "video": 3, "audio": 3}
_CITATION = re.compile(r"@(image|video|audio)(\d+)", re.IGNORECASE)


class Refusal(ValueError):
    """A submit body the provider refuses; ``param`` names the offending field."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = f"{param}: {message}"


@dataclass(frozen=True, slots=True)
class ValidRequest:
    """What the simulator keeps of an accepted submit body."""

    model: str
    seconds: int
    ratio: str
    resolution: str
    generate_audio: bool
    callback_url: str | None
    dialect: str = "relaydance"
    credits: int = 0  # list price, for dialects that report what a task cost
    # The media URLs the body cited, in its order: what tests check a clip was made from.
    input_urls: tuple[str, ...] = ()


def _is_url(value: Any) -> bool:
    if not isinstance(value, str) or not value:
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _model(body: dict[str, Any]) -> Model:
    name = body.get("model")
    if not isinstance(name, str) or not name.strip():
        raise Refusal("model", "is required, e.g. 'doubao-seedance-2-0-720p'")
    model = MODELS.get(name)
    if model is None:
        raise Refusal("model", f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    return model


def _seconds(body: dict[str, Any], model: Model) -> int:
    value = body.get("seconds", str(min(max(5, model.min_seconds), model.max_seconds)))
    if not isinstance(value, str):
        raise Refusal("seconds", 'must be a string such as "5", not a number')
    if not value.isdigit() or not value.isascii():
        raise Refusal("seconds", f'must be whole seconds as a string, e.g. "5"; got {value!r}')
    seconds = int(value)
    if not model.min_seconds <= seconds <= model.max_seconds:
        raise Refusal(
            "seconds",
            f"{model.id} accepts {model.min_seconds}..{model.max_seconds} seconds; got {value!r}",
        )
    return seconds


def _content(metadata: dict[str, Any], model: Model) -> dict[str, int]:
    content = metadata.get("content", [])
    if not isinstance(content, list):
        raise Refusal("metadata.content", "must be an array of media entries")
    counts = {"image": 0, "video": 0, "audio": 0}
    roles: set[str] = set()
    for i, entry in enumerate(content):
        where = f"metadata.content[{i}]"
        if not isinstance(entry, dict):
            raise Refusal(where, "must be an object with type, a url payload and role")
        kind = entry.get("type")
        if kind not in _KINDS:
            raise Refusal(f"{where}.type", "must be image_url, video_url or audio_url")
        payload = entry.get(kind)
        if not isinstance(payload, dict) or not _is_url(payload.get("url")):
            raise Refusal(f"{where}.{kind}", 'must be {"url": "https://..."}')
        role = entry.get("role")
        if role not in _ROLES[kind]:
            raise Refusal(f"{where}.role", f"must be one of {', '.join(_ROLES[kind])} for {kind}")
        if role in roles and role in ("first_frame", "last_frame"):
            raise Refusal(f"{where}.role", f"only one {role} is allowed")
        roles.add(role)
        counts[_KINDS[kind]] += 1
    frames = roles & {"first_frame", "last_frame"}
    if frames and "reference_image" in roles:
        raise Refusal(
            "metadata.content",
            "reference images cannot be mixed with first/last-frame mode; use one or the other",
        )
    if frames and not model.frames:
        raise Refusal("metadata.content", f"{model.id} does not accept first/last frames")
    limits = {"image": model.max_images, "video": model.max_videos, "audio": model.max_audio}
    for kind, count in counts.items():
        limit = min(_CAPS[kind], limits[kind])
        if count > limit:
            raise Refusal(
                "metadata.content",
                f"{model.id} accepts at most {limit} {kind} entries; got {count}",
            )
    for kind in model.requires:
        if counts[kind] == 0:
            raise Refusal("metadata.content", f"{model.id} needs at least one {kind} entry")
    return counts


def _citations(prompt: str, counts: dict[str, int]) -> None:
    for match in _CITATION.finditer(prompt):
        kind, number = match.group(1).lower(), int(match.group(2))
        if not 1 <= number <= counts[kind]:
            have = counts[kind]
            raise Refusal(
                "prompt",
                f"{match.group(0)} cites {kind} {number} but content[] has {have} {kind} "
                f"entr{'y' if have == 1 else 'ies'}",
            )


def validate_submit(body: Any) -> ValidRequest:
    """Check a ``POST /v1/video/generations`` body; raises :class:`Refusal`."""
    if not isinstance(body, dict):
        raise Refusal("body", "must be a JSON object")
    if "callback_url" in body:
        raise Refusal("callback_url", "goes inside metadata (metadata.callback_url)")
    model = _model(body)
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise Refusal("prompt", "is required")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise Refusal("prompt", f"is {len(prompt)} characters; at most {MAX_PROMPT_CHARS}")
    seconds = _seconds(body, model)
    metadata = body.get("metadata", {})
    if not isinstance(metadata, dict):
        raise Refusal("metadata", "must be an object")
    ratio = metadata.get("ratio", model.default_ratio)
    if ratio not in model.ratios:
        raise Refusal("metadata.ratio", f"{model.id} offers {', '.join(model.ratios)}")
    resolution = metadata.get("resolution", model.default_resolution)
    if resolution not in model.resolutions:
        raise Refusal("metadata.resolution", f"{model.id} offers {', '.join(model.resolutions)}")
    audio = metadata.get("generate_audio", False)
    if not isinstance(audio, bool):
        raise Refusal("metadata.generate_audio", "must be true or false")
    if audio and not model.generate_audio:
        raise Refusal("metadata.generate_audio", f"{model.id} cannot generate audio")
    callback = metadata.get("callback_url")
    if callback is not None and not _is_url(callback):
        raise Refusal("metadata.callback_url", "must be an absolute http(s) URL")
    _citations(prompt, _content(metadata, model))
    urls = tuple(entry[entry["type"]]["url"] for entry in metadata.get("content", []))
    return ValidRequest(model.id, seconds, ratio, resolution, audio, callback, input_urls=urls)
