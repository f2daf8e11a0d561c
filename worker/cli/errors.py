"""Exit codes and error output shared by every ``relaydance`` command.

=====  ============================================================================
code   meaning
=====  ============================================================================
0      done: the job (or every line of the batch) finished, or the command did its work
1      failed: the job failed or was canceled, a line did not end done, a check failed
2      invalid input or configuration, or nothing found by that id; nothing was enqueued
3      cannot tell: Redis was unreachable, or ``--wait`` ran out of time before the job
       was final; the job may still finish (look again with ``relaydance status``)
=====  ============================================================================

Never read 3 as a failure to retry: the job it is about may be rendering, and paid for.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from worker.errors import InvalidRequest

__all__ = [
    "EXIT_FAILED",
    "EXIT_INVALID",
    "EXIT_OK",
    "EXIT_UNKNOWN",
    "die",
    "die_invalid",
    "die_not_found",
    "die_unreachable",
    "redis_asked",
    "redis_url_shown",
    "redis_where",
    "unreachable_text",
]

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_UNKNOWN = 0, 1, 2, 3


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


def _redis_parts() -> tuple[str, str]:
    from config.redis_url import DEFAULT_REDIS_URL, describe_redis_url
    from config.settings import get_settings
    from worker.cli.devenv import redis_source

    settings = get_settings()
    url = settings.redis_url or DEFAULT_REDIS_URL
    return describe_redis_url(url, master=settings.redis_sentinel_master), redis_source(settings)


def redis_where() -> str:
    """Where this process's Redis is (host, port and db, never a password) and why that one."""
    where, source = _redis_parts()
    return f"{where} ({source})"


def redis_url_shown() -> str:
    """This process's Redis URL without secrets, and why that one."""
    from config.redis_url import DEFAULT_REDIS_URL, url_without_secrets
    from config.settings import get_settings
    from worker.cli.devenv import redis_source

    settings = get_settings()
    url = url_without_secrets(
        settings.redis_url or DEFAULT_REDIS_URL, master=settings.redis_sentinel_master
    )
    return f"{url} ({redis_source(settings)})"


def redis_asked() -> str:
    """Which Redis a lookup asked, and why that one."""
    from config.settings import get_settings

    fix = "" if get_settings().redis_url else "; set REDIS_URL to the fleet's Redis"
    return f"asked Redis at {redis_where()}{fix}"


def unreachable_text(exc: BaseException) -> str:
    """``Redis at HOST:PORT is unreachable`` with the reason, the fix, and where it came from."""
    described, source = _redis_parts()
    where, _, db = described.rpartition(" db ")
    return (
        f"Redis at {where} is unreachable ({type(exc).__name__}: {str(exc)[:160]}): start "
        f"it, or set REDIS_URL to the fleet's Redis (db {db}, {source})"
    )


def die_unreachable(exc: BaseException, details: list[str] | None = None) -> NoReturn:
    """Exit 3 (cannot tell) when Redis is unreachable: one plain line, never a traceback."""
    click.echo(f"error: {unreachable_text(exc)}", err=True)
    for line in details or []:
        click.echo(f"  {line}", err=True)
    sys.exit(EXIT_UNKNOWN)


def die_not_found(message: str) -> NoReturn:
    """Exit 2 for a lookup that found nothing, saying which Redis was asked."""
    die(message, [redis_asked()])
