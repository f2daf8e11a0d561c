"""One batch line's ``refs``: other lines' stills as its first reference images.

A video line may name image lines by their ``id`` in ``refs``; each named line's image
becomes one of its reference images, in order, before the line's own ``images`` (so
``@image1`` cites the first ref). This module checks one line on its own: the shape of its
refs, an image line that carries refs, a model that takes no reference images, too many
images once the refs are counted, and a provider that takes no uploads. Whether the ids
exist, name image lines and form no cycle is the whole file's check
(:mod:`worker.batch.storyboard`).

A video line with refs is validated with a placeholder URL standing for each ref, so every
rule of its provider (``@imageN`` citations, a model that needs an image, frames against
references) sees the images its job will send; the placeholders are taken out afterwards,
and the enqueue side puts each still's URL in their place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from worker.errors import InvalidRequest
from worker.render.catalogue import MODELS
from worker.render.image_catalogue import is_image_model
from worker.render.image_request import ImageRequest, validate_image_request
from worker.render.request import LIMITS, Problems, RenderRequest
from worker.render.rules import rules_for

__all__ = ["MAX_ID", "LineRequest", "clean_id", "take_refs", "validate_line"]

MAX_ID = 128
LineRequest = RenderRequest | ImageRequest
Validate = Callable[[Mapping[str, Any], str], RenderRequest]
_PLACEHOLDER = "https://refs.invalid/ref-{}.png"  # .invalid never resolves (RFC 2606)
_SHAPE = 'give refs as a list of image lines\' ids, e.g. ["k1"] (in CSV: k1;k2)'


def clean_id(value: Any) -> str | None:
    """A line id as text (an integer id is its digits), or None when it is no usable id."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value).strip()
    if not text or len(text) > MAX_ID or any(ord(c) < 32 or ord(c) == 127 for c in text):
        return None
    return text


def take_refs(data: dict[str, Any]) -> tuple[tuple[str, ...], str | None]:
    """The line's refs (taken out of ``data``) and a problem with their shape."""
    value = data.pop("refs", None)
    if value is None or value == "":
        return (), None
    if isinstance(value, str | int) and not isinstance(value, bool):
        value = [value]  # one id alone
    if not isinstance(value, list | tuple):
        return (), _SHAPE
    refs: list[str] = []
    for number, entry in enumerate(value, start=1):
        text = clean_id(entry)
        if text is None:
            return (), f"entry {number} is not a line id; {_SHAPE}"
        if text in refs:
            return (), f"{text!r} is named twice; name each image line once"
        refs.append(text)
    return tuple(refs), None


def validate_line(
    data: Any, refs: tuple[str, ...], *, provider: str, validate: Validate
) -> LineRequest:
    """The line's request, an image request for an image model; raises
    :class:`InvalidRequest` with every problem, the line's own and its refs'."""
    if isinstance(data, Mapping) and is_image_model(data.get("model")):
        return _image_line(data, refs, provider)
    if not refs:
        return validate(data, provider)
    problems = _ref_problems(data, refs, provider)
    padded = None if problems else _with_placeholders(data, refs)
    try:
        request = validate(data if padded is None else padded, provider)
    except InvalidRequest as exc:
        own = list(exc.problems) if padded is None else _noted(exc.problems, len(refs))
        raise InvalidRequest(own + problems) from None
    if problems:
        raise InvalidRequest(problems)
    return request if padded is None else _without_placeholders(request, refs)


def _image_line(data: Mapping[str, Any], refs: tuple[str, ...], provider: str) -> ImageRequest:
    problems: Problems = []
    if refs:
        problems.append(("refs", f"{str(data.get('model')).strip()} makes an image from its "
                         "prompt alone and takes no reference images; drop refs from this "
                         "image line"))  # fmt: skip
    try:
        request = validate_image_request(data, provider=provider)
    except InvalidRequest as exc:
        raise InvalidRequest([*exc.problems, *problems]) from None
    if problems:
        raise InvalidRequest(problems)
    return request


def _ref_problems(data: Any, refs: tuple[str, ...], provider: str) -> Problems:
    """Refs this line's provider or model cannot take (its other fields are validation's)."""
    rules = rules_for(provider)
    if not rules.uploads:
        return [("refs", f"{provider.capitalize()} takes no uploads, and a generated still "
                 "reaches a video job by upload once its provider's URL lapses; render this "
                 "line with a RelayDance key alias, or give the still's public https URL in "
                 "images instead of refs")]  # fmt: skip
    model_id = data.get("model") if isinstance(data, Mapping) else None
    model = rules.models.get(model_id.strip()) if isinstance(model_id, str) else None
    if model is None:
        return []  # an unknown model is validation's error
    limit = min(LIMITS["image"], model.max_images)
    if limit == 0:
        takers = ", ".join(m.id for m in MODELS.values() if m.max_images > 0)
        return [("refs", f"{model.id} takes no reference images, so no image line can feed "
                 f"it; drop refs, or use one of {takers}")]  # fmt: skip
    own = _own_images(data)
    if own is not None and len(refs) + own > limit:
        total = len(refs) + own
        return [("refs", f"{len(refs)} refs and {own} images make {total} images; "
                 f"{model.id} takes at most {limit}: remove {total - limit}")]  # fmt: skip
    return []


def _own_images(data: Mapping[str, Any]) -> int | None:
    images = data.get("images")
    if images is None:
        return 0
    if isinstance(images, str):
        return 1
    return len(images) if isinstance(images, list | tuple) else None


def _placeholders(refs: tuple[str, ...]) -> list[str]:
    return [_PLACEHOLDER.format(number) for number in range(1, len(refs) + 1)]


def _with_placeholders(data: Any, refs: tuple[str, ...]) -> dict[str, Any] | None:
    """The line with a placeholder image per ref before its own; None when its images have
    a shape validation refuses anyway."""
    if not isinstance(data, Mapping):
        return None
    images = data.get("images")
    own = [] if images is None else [images] if isinstance(images, str) else images
    if not isinstance(own, list | tuple):
        return None
    return {**data, "images": [*_placeholders(refs), *own]}


def _without_placeholders(request: RenderRequest, refs: tuple[str, ...]) -> RenderRequest:
    count = len(refs)
    assert list(request.images[:count]) == _placeholders(refs), "refs kept their places"
    return request.model_copy(update={"images": request.images[count:]})


def _noted(problems: Problems, count: int) -> Problems:
    """Problems of the images say that the line's refs count as its first images."""
    refs = "its ref counts" if count == 1 else f"its {count} refs count"
    note = f" ({refs} as its first images)"
    return [(name, message + note if name == "images" or "@image" in message.lower() else message)
            for name, message in problems]  # fmt: skip
