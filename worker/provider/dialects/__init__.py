"""Provider dialects: how one provider's API spells paths, bodies, statuses and errors.

The client (:mod:`worker.provider.client`) owns transport, authentication and the HTTP status to
exception mapping; a dialect owns everything else: ``relaydance`` (seeds 001-004) and
``kinovi`` (seed 003: ``createTask``/``recordInfo``, statuses ``waiting/generating/success/
fail``). Each is one module here and one line in the registry; nothing outside a dialect
spells its provider's fields.
"""

from __future__ import annotations

from collections.abc import Callable

from worker.provider.dialects.base import (
    Dialect,
    Endpoint,
    ForbiddenScope,
    RemoteTask,
    TaskStatus,
    forbidden_scope,
)
from worker.provider.dialects.kinovi import KinoviDialect
from worker.provider.dialects.relaydance import RelayDanceDialect

__all__ = [
    "Dialect",
    "Endpoint",
    "ForbiddenScope",
    "RemoteTask",
    "TaskStatus",
    "forbidden_scope",
    "get_dialect",
    "known_dialects",
]

_REGISTRY: dict[str, Callable[[], Dialect]] = {
    "relaydance": RelayDanceDialect,
    "kinovi": KinoviDialect,
}


def known_dialects() -> tuple[str, ...]:
    """Names accepted by :func:`get_dialect`."""
    return tuple(sorted(_REGISTRY))


def get_dialect(name: str) -> Dialect:
    """The dialect called ``name``; raises ValueError naming the known ones."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        known = ", ".join(known_dialects())
        raise ValueError(
            f"unknown provider dialect {name!r}; known dialects: {known} "
            f"(set RELAYDANCE_DIALECT, or a key's provider, to one of them)"
        ) from None
    return factory()
