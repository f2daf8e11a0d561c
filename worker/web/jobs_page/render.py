"""HTML from the package's templates, escaped by default (prompts and errors are user text)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from functools import lru_cache
from importlib import resources
from typing import Any

import jinja2

__all__ = ["STATIC_FILES", "render", "static_file"]

STATIC_FILES = {"app.css": "text/css; charset=utf-8",
                "app.js": "text/javascript; charset=utf-8"}  # fmt: skip


def age(epoch: float | None, now: float | None = None) -> str:
    """How long ago: ``42s``, ``3m``, ``5h``, ``2d``."""
    if not epoch:
        return "-"
    seconds = max((time.time() if now is None else now) - epoch, 0.0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def clock(epoch: float | None) -> str:
    """A UTC time with milliseconds: ``2025-01-02 12:03:10.123``."""
    if not epoch:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def money(value: float | None) -> str:
    """Dollars to the cent (``$0.70``, ``$1,234.50``), to a tenth of a cent only when a
    cent would hide it (``$0.0035``); ``-`` when unknown."""
    if value is None:
        return "-"
    if (value and abs(value) < 0.01) or round(value, 2) != round(value, 4):
        return f"${value:,.4f}"
    return f"${value:,.2f}"


def duration(seconds: float | None) -> str:
    """``1.2s``, ``3m05s``, ``2h10m``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds + 0.5)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("worker.web.jobs_page", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(age=age, clock=clock, money=money, duration=duration)
    return env


def render(template: str, **context: Any) -> str:
    """A template rendered with ``context``."""
    return _environment().get_template(template).render(**context)


def static_file(name: str) -> tuple[bytes, str] | None:
    """A packaged asset and its content type; None for any name not in the list."""
    content_type = STATIC_FILES.get(name)
    if content_type is None:
        return None
    data = resources.files("worker.web.jobs_page").joinpath("static", name).read_bytes()
    return data, content_type
