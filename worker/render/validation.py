"""Checking a render request before anything is enqueued or paid for.

:func:`validate_request` parses the caller's fields, checks them by the rules of the key
alias's provider (:mod:`worker.render.rules`) and the local files by the media allow-list
(:mod:`worker.render.local_media`), and raises :class:`~worker.errors.InvalidRequest` listing
every problem at once, each naming the field and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from worker.errors import InvalidRequest
from worker.render.local_media import allowed_dirs, check_file, expected_kind
from worker.render.request import FIELD_OF_KIND, Problems, RenderRequest, is_url
from worker.render.rules import rules_for

__all__ = ["validate_request"]

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


def validate_request(
    data: Mapping[str, Any] | RenderRequest,
    *,
    provider: str = "relaydance",
    check_files: bool = True,
    media_dirs: Sequence[Path] | None = None,
) -> RenderRequest:
    """Parse a render request and check it by ``provider``'s rules (the key alias's).

    Local files must lie inside ``media_dirs`` (default: ``RELAYDANCE_MEDIA_DIRS``, see
    :mod:`worker.render.local_media`). Raises :class:`InvalidRequest` listing every problem;
    returns the request normalised for that provider.
    """
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
                problems.append((FIELD_OF_KIND.get(kind, kind), problem))
    return problems


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
