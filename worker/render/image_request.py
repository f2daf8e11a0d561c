"""The image request: stills from a prompt, checked before anything is enqueued or paid for.

An image request names an image model (:mod:`worker.render.image_catalogue`), a prompt, how
many images (``n``) and a ``size``. :func:`validate_image_request` checks every field at
once and raises :class:`~worker.errors.InvalidRequest` naming each field and its fix;
:meth:`ImageRequest.to_body` is the documented ``POST /v1/images/generations`` body, with
the model's default size spelled out so the stored request says what was asked for.
Only RelayDance generates images: another provider's key alias is refused here.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from worker.errors import InvalidRequest
from worker.render.catalogue import did_you_mean, find_model
from worker.render.image_catalogue import ImageModel, find_image_model, known_image_models
from worker.render.request import MAX_PROMPT_CHARS, Problems

__all__ = ["IMAGE_FIELDS", "ImageRequest", "validate_image_request"]

IMAGE_FIELDS = ("model", "prompt", "n", "size")
_SIZE = re.compile(r"^(\d{2,5})x(\d{2,5})$")
_HINTS = {
    "model": "give an image model id as text, e.g. 'grok-imagine-image'",
    "prompt": "give the prompt as text",
    "n": "give a whole number of images, e.g. 1",
    "size": "give WIDTHxHEIGHT as text, e.g. '1024x1024'",
}


class ImageRequest(BaseModel):
    """Stills to generate. Build it with :func:`validate_image_request` to get every check."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    model: str
    prompt: str
    n: int = 1
    size: str | None = None

    @field_validator("n", mode="before")
    @classmethod
    def _whole_number(cls, value: Any) -> Any:
        if isinstance(value, bool):  # True would otherwise pass as 1 image
            raise ValueError("is true/false, not a number of images")
        text = value.strip() if isinstance(value, str) else ""
        if text.isascii() and text.isdigit():
            if len(text) > 6:  # echoing a huge number would flood the error
                raise ValueError("has far too many digits")
            return int(text)
        return value

    def to_body(self) -> dict[str, Any]:
        """The documented ``POST /v1/images/generations`` body (size made explicit)."""
        model = find_image_model(self.model)
        if model is None:
            raise InvalidRequest([("model", f"unknown image model {self.model!r}; validate "
                                   "the request first")])  # fmt: skip
        size = self.size or model.default_size
        return {"model": self.model, "prompt": self.prompt, "n": self.n, "size": size}

    def fingerprint(self) -> str:
        """A content hash of the body: identical requests have identical fingerprints."""
        canonical = json.dumps(self.to_body(), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def summary(self, *, width: int = 40) -> str:
        """A short, secret-free description for logs and Flower: model, count, prompt."""
        prompt = self.prompt if len(self.prompt) <= width else self.prompt[: width - 1] + "…"
        return f"{self.model} x{self.n} {prompt!r}"


def validate_image_request(
    data: Mapping[str, Any] | ImageRequest, *, provider: str = "relaydance"
) -> ImageRequest:
    """Parse and check an image request for a key alias of ``provider``.

    Raises :class:`InvalidRequest` listing every problem, each naming the field and the fix.
    """
    request, problems = (data, []) if isinstance(data, ImageRequest) else _parse(data)
    model = find_image_model(request.model)
    if provider != "relaydance":
        problems.append(("model", f"{provider} generates no images; render {request.model!r} "
                         "with a key alias whose provider is relaydance"))  # fmt: skip
    if model is None:
        problems.append(("model", _unknown_model(request.model)))
    problems += _prompt_problems(request.prompt)
    if model is not None:
        problems += _model_problems(request, model)
    if problems:
        raise InvalidRequest(problems)
    return request


def _parse(data: Any) -> tuple[ImageRequest, Problems]:
    if not isinstance(data, Mapping):
        kind = type(data).__name__
        raise InvalidRequest([("request", f"is a {kind}; give an object of fields "
                               f"({', '.join(IMAGE_FIELDS)})")])  # fmt: skip
    problems: Problems = [
        (str(name), f"unknown field for an image request; known fields are: "
         f"{', '.join(IMAGE_FIELDS)}")
        for name in data if name not in IMAGE_FIELDS
    ]  # fmt: skip
    known = {name: value for name, value in data.items() if name in IMAGE_FIELDS}
    try:
        return ImageRequest.model_validate(known), problems
    except ValidationError as exc:
        raise InvalidRequest(problems + _type_problems(exc)) from None


def _type_problems(exc: ValidationError) -> Problems:
    problems: Problems = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else "request"
        hint = _HINTS.get(field, "give a value")
        if err["type"] == "missing":
            problems.append((field, f"is required; {hint}"))
        else:
            problems.append((field, f"{err['msg'].removeprefix('Value error, ')}; {hint}"))
    return problems


def _unknown_model(model_id: str) -> str:
    known = ", ".join(known_image_models())
    video = find_model(model_id)
    if video is not None:
        return (f"{model_id} is a video model, not an image model; render clips with it as a "
                f"video request, or generate stills with one of {known}")  # fmt: skip
    hint = did_you_mean(model_id, known_image_models())
    return f"unknown image model {model_id!r}{hint or ';'} image models: {known}"


def _prompt_problems(prompt: str) -> Problems:
    if not prompt:
        return [("prompt", "is empty; describe the image to generate")]
    if len(prompt) > MAX_PROMPT_CHARS:
        return [("prompt", f"is {len(prompt)} characters; shorten it to at most "
                 f"{MAX_PROMPT_CHARS}")]  # fmt: skip
    return []


def _model_problems(request: ImageRequest, model: ImageModel) -> Problems:
    problems: Problems = []
    if not model.min_n <= request.n <= model.max_n:
        problems.append(("n", f"{request.n} is outside {model.id}'s range; ask for "
                         f"{model.min_n} to {model.max_n} images per request"))  # fmt: skip
    if request.size is not None:
        if not _SIZE.match(request.size):
            problems.append(("size", f"{request.size[:40]!r} is not WIDTHxHEIGHT; write e.g. "
                             f"{model.default_size!r}"))  # fmt: skip
        elif request.size not in model.sizes:
            problems.append(("size", f"{request.size!r} is not a size {model.id} takes; use "
                             f"one of {', '.join(model.sizes)}, or leave it out for "
                             f"{model.default_size}"))  # fmt: skip
    return problems
