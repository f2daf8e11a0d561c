"""The render request: validated before anything is enqueued or paid for.

A request names a model, a prompt, a length and reference media (URLs, or local paths
that the ``upload`` step hosts through ``POST /files``). :func:`validate_request` collects
every problem at once and raises :class:`~worker.errors.InvalidRequest`, whose entries
name the field and the fix; the provider of the key alias decides which rules apply
(:mod:`worker.providers`; RelayDance's are the ``check_relaydance`` family below).
:meth:`RenderRequest.to_body` produces exactly the JSON RelayDance documents (seeds 001
and 004), the neutral shape every provider dialect translates from.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from worker.catalogue import MODELS, Model, get_model, known_models
from worker.errors import InvalidRequest
from worker.local_media import allowed_dirs, check_file, expected_kind

__all__ = [
    "MAX_PROMPT_CHARS",
    "MAX_SECONDS",
    "RenderRequest",
    "check_relaydance",
    "is_url",
    "url_problem",
    "validate_request",
]

MAX_PROMPT_CHARS = 4000  # seed 003
MAX_SECONDS = 15  # seeds 000, 002, 003
LIMITS = {"image": 9, "video": 3, "audio": 3}  # seeds 000, 001
_REF = re.compile(r"@(image|video|audio)(\d+)", re.IGNORECASE)
# Whitespace and control characters are never valid inside a URL; the provider would
# refuse it (or fetch something else), so it is caught here, before any money is spent.
_URL_BAD_CHARS = re.compile(r"[\s\x00-\x1f\x7f]")
_FIELD_OF_KIND: dict[str, str] = {"image": "images", "video": "videos", "audio": "audio"}
_ROLE = {"image": "reference_image", "video": "reference_video", "audio": "reference_audio"}
_MAX_OF_KIND = {"image": "max_images", "video": "max_videos", "audio": "max_audio"}
# What to do when a field has the wrong type; appended to pydantic's own message.
_TYPE_HINTS = {
    "model": "give a model id as text, e.g. 'doubao-seedance-2-0-720p'",
    "prompt": "give the prompt as text",
    "seconds": 'give whole seconds, e.g. 5 or "5"',
    "ratio": "give an aspect ratio as text, e.g. '16:9'",
    "resolution": "give a resolution as text, e.g. '720p'",
    "generate_audio": "give true or false",
    "images": "give a list of image URLs or file paths",
    "videos": "give a list of video URLs or file paths",
    "audio": "give a list of audio URLs or file paths",
    "first_frame": "give one image URL or file path",
    "last_frame": "give one image URL or file path",
    "mode": "give 'auto', 'reference' or 'frames' ('keyframe' is the same as 'frames')",
    "upscale": "give '4k' or leave it out",
}

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

    @property
    def catalogue_entry(self) -> Model:
        """The catalogue entry of this request's model (validated to exist)."""
        from worker.providers import find_model  # the providers import this module

        model = find_model(self.model)
        if model is None:  # pragma: no cover - validate_request refuses this first
            raise InvalidRequest([("model", f"unknown model {self.model!r}")])
        return model

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

    def estimated_cost(self) -> float:
        """Estimated price in USD from the configured price table (``RELAYDANCE_PRICES``).

        Failed generations are not billed.
        """
        from worker.pricing import estimate_cost  # pricing builds on this module

        return round(estimate_cost(self), 4)

    def fingerprint(self) -> str:
        """A content hash: identical requests have identical fingerprints."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def summary(self, *, width: int = 40) -> str:
        """A short, secret-free description for logs and Flower: model and prompt excerpt."""
        prompt = self.prompt if len(self.prompt) <= width else self.prompt[: width - 1] + "…"
        return f"{self.model} {self.seconds}s {prompt!r}"

    def to_body(
        self,
        *,
        callback_url: str | None = None,
        media_urls: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """The documented ``POST /video/generations`` body; local paths via ``media_urls``."""
        model = self.catalogue_entry
        urls = media_urls or {}

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


def validate_request(
    data: Mapping[str, Any] | RenderRequest,
    *,
    provider: str = "relaydance",
    check_files: bool = True,
    media_dirs: Sequence[Path] | None = None,
) -> RenderRequest:
    """Parse a render request and check it by ``provider``'s rules (the key alias's).

    Local files must lie inside ``media_dirs`` (default: ``RELAYDANCE_MEDIA_DIRS``, see
    :mod:`worker.local_media`). Raises :class:`InvalidRequest` listing every problem;
    returns the request normalised for that provider.
    """
    from worker.providers import rules_for  # the providers import this module

    rules = rules_for(provider)
    if isinstance(data, RenderRequest):
        request, problems = data, list[tuple[str, str]]()
    else:
        if rules.prompt_optional and isinstance(data, Mapping) and "prompt" not in data:
            data = {**data, "prompt": ""}  # the rules say when a prompt is needed
        request, problems = _parse(data)
    problems += rules.check(request, check_files=check_files)
    resolved: dict[str, str] = {}
    if check_files and rules.uploads and request.local_paths():
        problems += _local_file_problems(request, media_dirs, resolved)
    if problems:
        raise InvalidRequest(problems)
    request = rules.normalise(request)
    if check_files and request.local_paths():
        request = request.model_copy(update=_absolute_paths(request, resolved))
    return request


def check_relaydance(request: RenderRequest, *, check_files: bool) -> Problems:
    """RelayDance's rules: every problem of a parsed request (seeds 000-004)."""
    return _check(request, check_files=check_files)


def _parse(data: Any) -> tuple[RenderRequest, Problems]:
    """The parsed request and the unknown fields it named (reported with every other problem)."""
    if not isinstance(data, Mapping):
        kind = type(data).__name__
        raise InvalidRequest(
            [("request", f"is a {kind}; give an object of fields (model, prompt, ...)")]
        )
    fields = RenderRequest.model_fields
    known = {name: value for name, value in data.items() if name in fields}
    problems: Problems = [
        (str(name), f"unknown field; known fields are: {', '.join(fields)}")
        for name in data
        if name not in fields
    ]
    try:
        return RenderRequest.model_validate(known), problems
    except ValidationError as exc:
        raise InvalidRequest(problems + _pydantic_problems(exc)) from None


def _pydantic_problems(exc: ValidationError) -> Problems:
    problems: Problems = []
    for err in exc.errors():
        loc = err["loc"]
        field = str(loc[0]) if loc else "request"
        if err["type"] == "missing":
            problems.append((field, f"is required; {_TYPE_HINTS.get(field, 'give a value')}"))
            continue
        message = err["msg"].removeprefix("Value error, ")
        if len(loc) > 1 and isinstance(loc[1], int):
            message = f"entry {loc[1] + 1}: {message}"
        hint = _TYPE_HINTS.get(field)
        problems.append((field, f"{message}; {hint}" if hint else message))
    return problems


def _check(request: RenderRequest, *, check_files: bool) -> Problems:
    problems: Problems = []
    model = get_model(request.model)
    if model is None:
        from worker.providers import find_model

        elsewhere = find_model(request.model)
        where = ""
        if elsewhere is not None:
            where = (
                f" ({request.model} is a {elsewhere.provider} model: render it with a key "
                f"alias whose provider is {elsewhere.provider})"
            )
        problems.append(
            ("model", f"unknown model {request.model!r}{where}; known models: "
             f"{', '.join(known_models())}")
        )  # fmt: skip
    if request.upscale is not None:
        problems.append(
            ("upscale", "RelayDance does not upscale; drop it, or render with a key alias "
             "whose provider is kinovi")
        )  # fmt: skip
    problems += _check_prompt(request)
    if model is not None:
        problems += _check_options(request, model)
        problems += _check_media_counts(request, model)
    problems += _check_references(request)
    for kind, source in request.media():
        problems += _check_source(kind, source)
    return problems


def _check_prompt(request: RenderRequest) -> Problems:
    if not request.prompt:
        return [("prompt", "is empty; describe the clip to generate")]
    if len(request.prompt) > MAX_PROMPT_CHARS:
        return [
            (
                "prompt",
                f"is {len(request.prompt)} characters; shorten it to at most {MAX_PROMPT_CHARS}",
            )
        ]
    return []


def _models_with(predicate: Callable[[Model], object]) -> str:
    return ", ".join(m.id for m in MODELS.values() if predicate(m)) or "none"


def _check_options(request: RenderRequest, model: Model) -> Problems:
    problems: Problems = []
    low, high = model.min_seconds, min(model.max_seconds, MAX_SECONDS)
    if not low <= request.seconds <= high:
        problems.append(
            ("seconds", f"{request.seconds} is outside {model.id}'s range; use {low} to {high}")
        )
    if request.ratio is not None and request.ratio not in model.ratios:
        problems.append(
            ("ratio", f"{request.ratio!r} is not offered by {model.id}; use one of "
             f"{', '.join(model.ratios)}")
        )  # fmt: skip
    if request.resolution is not None and request.resolution not in model.resolutions:
        problems.append(
            ("resolution", f"{request.resolution!r} is not offered by {model.id}; use one of "
             f"{', '.join(model.resolutions)}")
        )  # fmt: skip
    if request.generate_audio and not model.generate_audio:
        problems.append(
            ("generate_audio", f"{model.id} cannot generate audio; drop the option or use "
             f"one of {_models_with(lambda m: m.generate_audio)}")
        )  # fmt: skip
    return problems


def _check_media_counts(request: RenderRequest, model: Model) -> Problems:
    problems: Problems = []
    counts = {
        "image": len(request.images),
        "video": len(request.videos),
        "audio": len(request.audio),
    }
    for kind, count in counts.items():
        attribute = _MAX_OF_KIND[kind]
        limit = min(LIMITS[kind], getattr(model, attribute))
        if count <= limit:
            continue
        field = _FIELD_OF_KIND[kind]
        if limit == 0:
            takers = _models_with(lambda m: getattr(m, attribute) > 0)  # noqa: B023 - used at once
            problems.append(
                (field, f"{model.id} takes no {field}; remove them or use one of {takers}")
            )
        else:
            problems.append(
                (field, f"{count} given; {model.id} accepts at most {limit}, remove "
                 f"{count - limit}")
            )  # fmt: skip
    frames = request.first_frame is not None or request.last_frame is not None
    if frames and request.images:
        problems.append(
            ("images", "reference images cannot be mixed with first/last-frame mode; "
             "use either images or first_frame/last_frame")
        )  # fmt: skip
    if frames and not model.frames:
        problems.append(
            ("first_frame", f"{model.id} does not take first/last frames; use images, or one "
             f"of {_models_with(lambda m: m.frames)}")
        )  # fmt: skip
    if request.mode == "frames" and not frames:
        problems.append(("first_frame", "mode 'frames' needs first_frame or last_frame"))
    if request.mode == "reference" and frames:
        problems.append(("mode", "mode 'reference' cannot take first_frame/last_frame"))
    for kind in model.requires:
        if counts.get(kind, 0) == 0 and not (kind == "image" and frames):
            problems.append(
                (_FIELD_OF_KIND[kind], f"{model.id} needs at least one {kind}; add one")
            )
    return problems


def _check_references(request: RenderRequest) -> Problems:
    problems: Problems = []
    counts = {
        "image": len(request.images),
        "video": len(request.videos),
        "audio": len(request.audio),
    }
    seen: set[str] = set()
    for match in _REF.finditer(request.prompt):
        kind, index = match.group(1).lower(), int(match.group(2))
        tag = f"@{kind}{index}"
        if tag in seen:
            continue
        seen.add(tag)
        have = counts[kind]
        if not 1 <= index <= have:
            if have == 0 and kind == "image" and (request.first_frame or request.last_frame):
                fix = "first/last frames cannot be cited; remove the citation"
            elif have == 0:
                fix = f"add {_article(kind)} {kind} to {_FIELD_OF_KIND[kind]}"
            elif have == 1:
                fix = f"there is only one {kind}; cite it as @{kind}1"
            else:
                fix = f"there are {have} {_FIELD_OF_KIND[kind]}; cite @{kind}1 to @{kind}{have}"
            problems.append(
                (
                    "prompt",
                    f"{match.group(0)} refers to {kind} {index}, which does not exist; {fix}",
                )
            )
    return problems


def _check_source(kind: str, source: str) -> Problems:
    field = _FIELD_OF_KIND.get(kind, kind)
    if not source:
        return [(field, "an entry is empty; give a URL or a file path")]
    if is_url(source):
        problem = url_problem(source)
        return [(field, problem)] if problem else []
    return []


def _local_file_problems(
    request: RenderRequest, media_dirs: Sequence[Path] | None, resolved: dict[str, str]
) -> Problems:
    """Each local file outside the allowed directories, unreadable or of the wrong format."""
    dirs = allowed_dirs() if media_dirs is None else media_dirs
    problems: Problems = []
    for kind, source in request.media():
        if source and not is_url(source):
            problem, resolved[source] = check_file(source, expected_kind(kind), dirs)
            if problem:
                problems.append((_FIELD_OF_KIND.get(kind, kind), problem))
    return problems


def url_problem(source: str) -> str | None:
    """Why a media URL is malformed (naming only its scheme and host), or None."""
    # Only scheme and host are echoed: the path or query of a signed URL is a secret.
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


def _article(kind: str) -> str:
    return "an" if kind[:1] in ("a", "e", "i", "o", "u") else "a"


def _absolute_paths(request: RenderRequest, resolved: Mapping[str, str]) -> dict[str, Any]:
    def fix(source: str) -> str:
        if is_url(source):
            return source
        return resolved.get(source) or str(Path(source).expanduser().resolve())

    update: dict[str, Any] = {
        "images": tuple(fix(s) for s in request.images),
        "videos": tuple(fix(s) for s in request.videos),
        "audio": tuple(fix(s) for s in request.audio),
    }
    if request.first_frame:
        update["first_frame"] = fix(request.first_frame)
    if request.last_frame:
        update["last_frame"] = fix(request.last_frame)
    return update
