"""``relaydance render`` per provider: the alias's provider, the flags it takes, its body.

Kept apart from :mod:`worker.cli.main` so the command stays one list of options: a flag only
one provider takes (``--generate-audio`` for RelayDance, ``--mode``/``--upscale`` for
Kinovi) is refused, with exit 2, when the key alias's provider does not take it. So is a
clip's flag given with an image model (which takes ``--prompt``, ``--n`` and ``--size``),
and ``--n`` or ``--size`` with a video model.
"""

from __future__ import annotations

from typing import Any

from config.settings import SettingsError, get_settings
from worker.cli.errors import die
from worker.provider.dialects import get_dialect
from worker.render.aliases import alias_problem
from worker.render.image_catalogue import is_image_model
from worker.render.image_request import IMAGE_FIELDS, ImageRequest
from worker.render.request import RenderRequest
from worker.render.rules import provider_names, rules_for

__all__ = [
    "FLAG_FIELDS",
    "provider_body",
    "provider_of",
    "refuse_foreign_flags",
    "request_fields",
]

# Render options that not every provider takes: option name -> request field.
FLAG_FIELDS = {"--generate-audio": "generate_audio", "--mode": "mode", "--upscale": "upscale"}
_IMAGE_ONLY = frozenset(IMAGE_FIELDS) - {"model", "prompt"}  # a clip's request has the rest


def provider_of(key: str) -> str:
    """The provider behind a key alias; exits 2 on an unknown alias or bad settings."""
    try:
        settings = get_settings()
    except SettingsError as exc:
        die(str(exc))
    problem = alias_problem(key, settings.keys())
    if problem:
        die(f"--key: {problem}", ["set RELAYDANCE_API_KEYS, or pick one of them with --key"])
    return settings.provider_for(key)


def refuse_foreign_flags(provider: str, *, key: str, fields: dict[str, Any]) -> None:
    """Exit 2 naming each given flag the alias's provider does not take, and who takes it."""
    takes = rules_for(provider).flags
    problems = []
    for flag, field in FLAG_FIELDS.items():
        if fields.get(field) is None or flag in takes:
            continue
        others = [name for name in provider_names() if flag in rules_for(name).flags]
        problems.append(
            f"{flag}: key {key!r} is a {provider} key and {provider} does not take {flag}; "
            f"drop it, or use a key alias whose provider is {' or '.join(others)}"
        )
    if problems:
        die("the render request is invalid; nothing was enqueued", problems)


def request_fields(fields: dict[str, Any], *, given: set[str]) -> dict[str, Any]:
    """The request the options make: an image model's takes only its own fields, a video
    model's all but those; an option of the other kind given (in ``given``) exits 2."""
    image = is_image_model(fields.get("model"))
    data = {k: v for k, v in fields.items() if v not in (None, ())}

    def takes(name: str) -> bool:
        return name in IMAGE_FIELDS if image else name not in _IMAGE_ONLY

    foreign = [k for k in data if not takes(k) and k in given]
    if foreign:
        model = fields.get("model")
        what = (f"{model} is an image model: it takes --prompt, --n and --size" if image
                else "only an image model takes it (e.g. grok-imagine-image)")  # fmt: skip
        die("the render request is invalid; nothing was enqueued",
            [f"--{k.replace('_', '-')}: {what}" for k in foreign])  # fmt: skip
    return {k: v for k, v in data.items() if takes(k)}


def provider_body(
    provider: str, request: RenderRequest | ImageRequest
) -> tuple[dict[str, Any], list[str]]:
    """The body the provider would receive, and the local files uploaded first."""
    if isinstance(request, ImageRequest):
        return request.to_body(), []
    uploads = {p: f"<uploaded: {p}>" for p in request.local_paths()}
    body = get_dialect(provider).submit_body(request.to_body(media_urls=uploads))
    return body, list(uploads)
