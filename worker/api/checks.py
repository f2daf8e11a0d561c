"""Every check an enqueue makes before anything is written or sent, made once.

:func:`check_render` returns a :class:`CheckedRender`: the request normalised by the
rules of the provider behind its key alias, its local files found and sniffed. A request
naming an image model (:mod:`worker.render.image_catalogue`) is checked by the image
rules instead (:func:`~worker.render.image_request.validate_image_request`: model, prompt,
``n``, ``size``) and becomes an image job. The enqueue takes it as it is, so a caller
that checked first (the CLI, to show a dry run) does not have every file read again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from config.settings import get_settings
from worker.errors import InvalidRequest
from worker.job.states import JobKind
from worker.render.aliases import alias_problem
from worker.render.image_catalogue import is_image_model
from worker.render.image_request import ImageRequest, validate_image_request
from worker.render.request import RenderRequest
from worker.render.validation import validate_request

__all__ = ["CheckedRender", "check_render"]


@dataclass(frozen=True)
class CheckedRender:
    """A render request (a clip's, or stills') that passed :func:`check_render`, with the
    key and ``on_done`` it was checked for. Make it with :func:`check_render` only."""

    request: RenderRequest | ImageRequest
    key: str
    on_done: str | None = None

    @property
    def kind(self) -> JobKind:
        """The job it makes: a clip, or stills."""
        return JobKind.IMAGE if isinstance(self.request, ImageRequest) else JobKind.VIDEO

    @property
    def uploads(self) -> bool:
        """Whether local files go up before the submission (a ``prepare`` step first)."""
        return isinstance(self.request, RenderRequest) and bool(self.request.local_paths())


def check_render(
    request: RenderRequest | ImageRequest | Mapping[str, Any],
    *,
    key: str = "default",
    on_done: str | None = None,
    check_on_done: bool = False,
) -> CheckedRender:
    """Check a render request by the rules of the provider behind ``key``.

    Raises :class:`~worker.errors.InvalidRequest` listing every problem. With
    ``check_on_done``, ``on_done`` must name a task registered on the fleet's app in
    this process.
    """
    settings = get_settings()
    bad_key = alias_problem(key, settings.keys())
    if bad_key:  # before anything else reads it: a key given as the alias goes no further
        raise InvalidRequest([("key", bad_key)])
    provider = settings.provider_for(key)
    valid: RenderRequest | ImageRequest
    if isinstance(request, ImageRequest) or (
        isinstance(request, Mapping) and is_image_model(request.get("model"))
    ):
        valid = validate_image_request(request, provider=provider)
    else:
        valid = validate_request(request, provider=provider)
    if on_done is not None and not on_done.strip():
        raise InvalidRequest([("on_done", "is empty; give a Celery task name or leave it out")])
    if on_done is not None and check_on_done:
        _check_registered(on_done)
    return CheckedRender(valid, key, on_done)


def _check_registered(name: str) -> None:
    from worker import app

    if name in app.tasks:
        return
    ours = sorted(n for n in app.tasks if not n.startswith(("celery.", "relaydance.")))
    known = ", ".join(ours) or "none"
    raise InvalidRequest([(
        "on_done",
        f"no task named {name!r} is registered on the fleet's app (registered: {known}); "
        "check the spelling, and import the module that defines it",
    )])  # fmt: skip
