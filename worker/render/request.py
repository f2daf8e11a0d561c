"""The render request: what a caller asks for, in the neutral shape every provider reads.

A request names a model, a prompt, a length and reference media (URLs, or local paths
that the ``upload`` step hosts through ``POST /files``). It is checked before anything is
enqueued or paid for by :func:`worker.render.validation.validate_request`, with the rules of the
key alias's provider (:mod:`worker.render.rules`). :meth:`RenderRequest.to_body` produces
exactly the JSON RelayDance documents (seeds 001 and 004), the neutral shape every
provider dialect translates from. This module imports no provider, price or setting.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from worker.errors import InvalidRequest
from worker.render.catalogue import find_model

__all__ = [
    "FIELD_OF_KIND",
    "LIMITS",
    "MAX_PROMPT_CHARS",
    "MAX_SECONDS",
    "REFERENCE",
    "Problems",
    "RenderRequest",
    "is_url",
    "url_problem",
]

MAX_PROMPT_CHARS = 4000  # seed 003
MAX_SECONDS = 15  # seeds 000, 002, 003
LIMITS = {"image": 9, "video": 3, "audio": 3}  # seeds 000, 001
REFERENCE = re.compile(r"@(image|video|audio)(\d+)", re.IGNORECASE)
# Whitespace and control characters are never valid inside a URL; the provider would
# refuse it (or fetch something else), so it is caught here, before any money is spent.
_URL_BAD_CHARS = re.compile(r"[\s\x00-\x1f\x7f]")
FIELD_OF_KIND: dict[str, str] = {"image": "images", "video": "videos", "audio": "audio"}
# A storyboard still's image in a clip's request (worker.job.inputs.refs): the submit step
# puts its (signed) url in the body, so a retake of the clip is valid as any request is.
STILL_REF = re.compile(r"still://rdj_[0-9a-f]{32}/[1-9][0-9]{0,2}")
_ROLE = {"image": "reference_image", "video": "reference_video", "audio": "reference_audio"}

Problems = list[tuple[str, str]]
_TOO_LONG = 10**6  # seconds: any length of clip is far below


def is_url(source: str) -> bool:
    """Whether a media source is a URL (as opposed to a local path)."""
    return "://" in source


class RenderRequest(BaseModel):
    """One clip to render. Build it with :func:`validate_request` to get every check."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    model: str
    prompt: str
    seconds: int = 5
    ratio: str | None = None
    resolution: str | None = None
    generate_audio: bool | None = None
    images: tuple[str, ...] = Field(default=())
    videos: tuple[str, ...] = Field(default=())
    audio: tuple[str, ...] = Field(default=())
    first_frame: str | None = None
    last_frame: str | None = None
    mode: Literal["auto", "reference", "frames"] = "auto"
    upscale: str | None = None

    @field_validator("mode", mode="before")
    @classmethod
    def _keyframe_is_frames(cls, value: Any) -> Any:
        # Kinovi calls first/last-frame generation "keyframe"; it is one mode here.
        return "frames" if isinstance(value, str) and value.strip() == "keyframe" else value

    @field_validator("seconds", mode="before")
    @classmethod
    def _seconds_from_text(cls, value: Any) -> Any:
        # The provider takes seconds as a string; accept "5" as well as 5 from users.
        if isinstance(value, bool):  # True would otherwise pass as 1 second
            raise ValueError("is true/false, not a number of seconds")
        if isinstance(value, str):
            text = value.strip()
            if text.isascii() and text.isdigit():
                value = int(text) if len(text) <= 6 else _TOO_LONG
        if isinstance(value, int) and not -_TOO_LONG < value < _TOO_LONG:
            # A huge number is no length; echoing it would flood the error (or fail to print).
            raise ValueError("has far too many digits")
        return value

    @field_validator("images", "videos", "audio", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    # Derived ------------------------------------------------------------------------------

    def media(self) -> list[tuple[str, str]]:
        """Every (kind, source) in content order: images, videos, audio, then frames."""
        items = [("image", s) for s in self.images]
        items += [("video", s) for s in self.videos]
        items += [("audio", s) for s in self.audio]
        items += [("first_frame", s) for s in (self.first_frame,) if s]
        items += [("last_frame", s) for s in (self.last_frame,) if s]
        return items

    def local_paths(self) -> list[str]:
        """Sources that are local files, to be uploaded before submission."""
        return [source for _, source in self.media() if not is_url(source)]

    def fingerprint(self) -> str:
        """A content hash: identical requests have identical fingerprints."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def summary(self, *, width: int = 40) -> str:
        """A short, secret-free description for logs and Flower: model and prompt excerpt."""
        prompt = self.prompt if len(self.prompt) <= width else self.prompt[: width - 1] + "…"
        return f"{self.model} {self.seconds}s {prompt!r}"

    def _content(self, urls: Mapping[str, str]) -> list[dict[str, Any]]:
        """The body's media entries; a local file is sent as the URL it was uploaded to."""

        def url_of(source: str) -> str:
            if is_url(source):
                return source
            try:
                return urls[source]
            except KeyError:
                raise InvalidRequest(
                    [("media", f"local file {source!r} has not been uploaded yet")]
                ) from None

        content: list[dict[str, Any]] = []
        for kind, source in self.media():
            if kind in ("first_frame", "last_frame"):
                entry_type, role = "image_url", kind
            else:
                entry_type, role = f"{kind}_url", _ROLE[kind]
            content.append({"type": entry_type, entry_type: {"url": url_of(source)}, "role": role})
        return content

    def to_body(
        self,
        *,
        callback_url: str | None = None,
        media_urls: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """The documented ``POST /video/generations`` body; local paths via ``media_urls``."""
        model = find_model(self.model)
        if model is None:
            raise InvalidRequest(
                [("model", f"unknown model {self.model!r}; validate the request first")]
            )
        content = self._content(media_urls or {})
        metadata: dict[str, Any] = {}
        if self.ratio or model.send_defaults:
            metadata["ratio"] = self.ratio or model.default_ratio
        if self.resolution or model.send_defaults:
            metadata["resolution"] = self.resolution or model.default_resolution
        if self.upscale:
            metadata["upscale"] = self.upscale
        if self.generate_audio is not None:
            metadata["generate_audio"] = self.generate_audio
        if callback_url:
            metadata["callback_url"] = callback_url
        if content:
            metadata["content"] = content
        return {
            "model": self.model,
            "prompt": self.prompt,
            "seconds": str(self.seconds),
            "metadata": metadata,
        }


def url_problem(source: str) -> str | None:
    """Why a media URL is malformed (naming only its scheme and host), or None."""
    # Only scheme and host are echoed: the path or query of a signed URL is a secret.
    if STILL_REF.fullmatch(source):
        return None
    try:
        parts = urlsplit(source)
        host = parts.hostname
        parts.port  # noqa: B018 - parsing the port is the check (raises on "host:abc")
    except ValueError:
        return "malformed URL (bad host or port); use an http(s) URL such as https://host/a.jpg"
    shown = f"{parts.scheme}://{host or ''}"
    if parts.scheme not in ("http", "https"):
        return f"malformed URL {shown!r}: scheme must be http or https"
    if not host:
        return f"malformed URL {shown!r}: it has no host; use https://host/path"
    if _URL_BAD_CHARS.search(source):
        return (
            f"malformed URL {shown!r}: it contains spaces or control characters; "
            "percent-encode them (a space is %20)"
        )
    return None
