"""RelayDance's rules (seeds 000-004): its catalogue (:mod:`worker.render.catalogue`), its checks.

The checks read a parsed request and return every problem as (field, message with the
fix). A model that another provider offers is named as such; the registry hands in the
lookup (``find_elsewhere``) so that this module needs no other provider.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from worker.render.catalogue import MODELS, Model, did_you_mean, get_model, known_models
from worker.render.request import (
    FIELD_OF_KIND,
    LIMITS,
    MAX_PROMPT_CHARS,
    MAX_SECONDS,
    REFERENCE,
    Problems,
    RenderRequest,
    is_url,
    url_problem,
)

__all__ = ["RelayDanceRules"]

MAX_OF_KIND = {"image": "max_images", "video": "max_videos", "audio": "max_audio"}


class RelayDanceRules:
    """Seeds 000-004: the model list, media limits, frames vs references, uploads."""

    name = "relaydance"
    models: Mapping[str, Model] = MODELS
    uploads = True
    flags = frozenset({"--generate-audio"})
    prompt_optional = False

    def __init__(self, find_elsewhere: Callable[[str], Model | None] = lambda _: None) -> None:
        self.find_elsewhere = find_elsewhere

    def check(self, request: RenderRequest, *, check_files: bool) -> Problems:
        """Every problem of a parsed request."""
        return _check(request, check_files=check_files, find_elsewhere=self.find_elsewhere)

    def normalise(self, request: RenderRequest) -> RenderRequest:
        """Unchanged: RelayDance requests are already in the neutral shape."""
        return request

    def default_prices(self) -> Mapping[str, Any]:
        """None here: :mod:`worker.render.pricing` holds RelayDance's seed prices."""
        return {}


def _check(
    request: RenderRequest, *, check_files: bool, find_elsewhere: Callable[[str], Model | None]
) -> Problems:
    problems: Problems = []
    model = get_model(request.model)
    if model is None:
        elsewhere = find_elsewhere(request.model)
        where = ""
        if elsewhere is not None:
            where = (
                f" ({request.model} is a {elsewhere.provider} model: render it with a key "
                f"alias whose provider is {elsewhere.provider})"
            )
        hint = "" if elsewhere is not None else did_you_mean(request.model, known_models())
        problems.append(
            ("model", f"unknown model {request.model!r}{where}{hint or ';'} known models: "
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
    if request.generate_audio and model.audio_always:
        problems.append(
            ("generate_audio", f"{model.id} always generates audio; drop the option")
        )  # fmt: skip
    elif request.generate_audio and not model.generate_audio:
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
        attribute = MAX_OF_KIND[kind]
        limit = min(LIMITS[kind], getattr(model, attribute))
        if count <= limit:
            continue
        field = FIELD_OF_KIND[kind]
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
            problems.append((FIELD_OF_KIND[kind], f"{model.id} needs at least one {kind}; add one"))
    return problems


def _check_references(request: RenderRequest) -> Problems:
    problems: Problems = []
    counts = {
        "image": len(request.images),
        "video": len(request.videos),
        "audio": len(request.audio),
    }
    seen: set[str] = set()
    for match in REFERENCE.finditer(request.prompt):
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
                fix = f"add {_article(kind)} {kind} to {FIELD_OF_KIND[kind]}"
            elif have == 1:
                fix = f"there is only one {kind}; cite it as @{kind}1"
            else:
                fix = f"there are {have} {FIELD_OF_KIND[kind]}; cite @{kind}1 to @{kind}{have}"
            problems.append(
                (
                    "prompt",
                    f"{match.group(0)} refers to {kind} {index}, which does not exist; {fix}",
                )
            )
    return problems


def _check_source(kind: str, source: str) -> Problems:
    field = FIELD_OF_KIND.get(kind, kind)
    if not source:
        return [(field, "an entry is empty; give a URL or a file path")]
    if is_url(source):
        problem = url_problem(source)
        return [(field, problem)] if problem else []
    return []


def _article(kind: str) -> str:
    return "an" if kind[:1] in ("a", "e", "i", "o", "u") else "a"
