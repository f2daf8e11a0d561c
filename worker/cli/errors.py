"""Exit codes and error output shared by every ``relaydance`` command."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from worker.errors import InvalidRequest

__all__ = [
    "EXIT_FAILED",
    "EXIT_INVALID",
    "EXIT_OK",
    "die",
    "die_invalid",
    "die_not_found",
    "redis_asked",
]

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def die(message: str, details: list[str] | None = None) -> NoReturn:
    """Print ``error: message`` and indented details on stderr; exit 2."""
    click.echo(f"error: {message}", err=True)
    for line in details or []:
        click.echo(f"  {line}", err=True)
    sys.exit(EXIT_INVALID)


def die_invalid(exc: Exception, *, what: str = "the render request is invalid") -> NoReturn:
    """Exit 2 for bad input: each problem of an InvalidRequest on its own line."""
    if isinstance(exc, InvalidRequest):
        die(f"{what}; nothing was enqueued", [f"{f}: {m}" for f, m in exc.problems])
    die(str(exc))


def redis_asked() -> str:
    """Which Redis a lookup asked (host and db, never a password), and why that one."""
    from config.redis_url import describe_redis_url
    from config.settings import get_settings

    settings = get_settings()
    if settings.redis_url is None:
        return (
            "asked Redis at 127.0.0.1:6379 db 0, the default, because REDIS_URL is not set; "
            "set REDIS_URL to the fleet's Redis"
        )
    where = describe_redis_url(settings.redis_url, master=settings.redis_sentinel_master)
    return f"asked Redis at {where} (REDIS_URL)"


def die_not_found(message: str) -> NoReturn:
    """Exit 2 for a lookup that found nothing, saying which Redis was asked."""
    die(message, [redis_asked()])
