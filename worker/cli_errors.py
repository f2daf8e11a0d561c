"""Exit codes and error output shared by every ``relaydance`` command."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from worker.errors import InvalidRequest

__all__ = ["EXIT_FAILED", "EXIT_INVALID", "EXIT_OK", "die", "die_invalid"]

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
