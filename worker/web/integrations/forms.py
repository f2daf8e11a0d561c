"""What a producer app's form, JSON endpoint and status page need, for any web framework.

The rule is the CLI's: a request is validated as sent, never repaired. Nothing is given a
default that would hide bad input (``seconds: 0`` is refused, not turned into 5), no field
is dropped (an unknown or misspelt one is refused by name), and a model's own defaults
apply only where the user chose "model default". The defaults are the documented ones: a
request that leaves ``model`` out gets :data:`DEFAULT_MODEL`, and one that leaves
``seconds`` out gets 5 s, as ``relaydance render`` does.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from worker.errors import InvalidRequest
from worker.infra.timefmt import at
from worker.render.catalogue import MODELS, Model
from worker.render.request import MAX_SECONDS

__all__ = [
    "DEFAULT_MODEL",
    "FORM_FIELDS",
    "form_models",
    "form_values",
    "problems_json",
    "request_from_form",
    "request_from_json",
    "seconds_range",
    "when",
]

DEFAULT_MODEL = "doubao-seedance-2-0-fast-260128"
FORM_FIELDS = ("prompt", "model", "seconds", "ratio", "resolution")
_OPTIONAL = ("ratio", "resolution")  # an empty choice means the model's default
_FRAMEWORK_FIELDS = ("csrfmiddlewaretoken",)  # Django's CSRF token is not a render field


def form_models() -> list[Model]:
    """Models a text-only form can serve: those that need no image or video, sorted by id."""
    return [MODELS[name] for name in sorted(MODELS) if not MODELS[name].requires]


def seconds_range(model: Model) -> tuple[int, int]:
    """The clip lengths a model accepts, as (shortest, longest)."""
    return model.min_seconds, min(model.max_seconds, MAX_SECONDS)


def request_from_form(form: Mapping[str, str]) -> dict[str, Any]:
    """The render request a form posted, field for field; empty optional choices left out.

    As with JSON, ``model`` defaults only when the post has no such field at all; an
    empty value is refused by validation, as is any field the request does not know.
    """
    data: dict[str, Any] = {}
    for name, value in form.items():
        if name in _FRAMEWORK_FIELDS or (name in _OPTIONAL and not value.strip()):
            continue
        data[name] = value
    return request_from_json(data)


def request_from_json(data: Mapping[str, Any]) -> dict[str, Any]:
    """The render request a JSON body sent, as is; ``model`` defaults only when absent."""
    request = dict(data)
    if "model" not in request:
        request["model"] = DEFAULT_MODEL
    return request


def form_values(form: Mapping[str, str] | None = None) -> dict[str, str]:
    """What the form shows: the user's own input after an error, else the defaults."""
    values = {"prompt": "A paper boat drifts down a rain-soaked street", "model": DEFAULT_MODEL,
              "seconds": "5", "ratio": "", "resolution": ""}  # fmt: skip
    if form is not None:
        values.update({name: str(form.get(name, "")) for name in FORM_FIELDS})
    return values


def problems_json(exc: InvalidRequest) -> dict[str, Any]:
    """The 400 body: each problem's field and message (the fix), as the docs show."""
    return {
        "error": "invalid render request",
        "problems": [{"field": field, "message": message} for field, message in exc.problems],
    }


def when(epoch: float | None, *, now: float | None = None) -> str:
    """A time for a page: ``12:03:10 UTC (3 s ago)``."""
    return at(epoch, now=time.time() if now is None else now)
