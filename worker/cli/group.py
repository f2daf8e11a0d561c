"""The ``relaydance`` command group: lazy commands, the dev stack's Redis, Redis outages.

Commands are imported when run or listed, so ``render`` loads no simulator, uvicorn or
batch code. Before a command runs, the Redis of a ``relaydance dev`` in this project is
taken when REDIS_URL is not set explicitly (:mod:`worker.cli.devenv`), and the command
says which Redis it uses; a Redis outage in any command becomes one plain line and exit 3
(:func:`worker.cli.errors.die_unreachable`), never a traceback, and so does a write the Redis
replicas did not confirm in time.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from worker.cli.errors import EXIT_UNKNOWN, die_unreachable

__all__ = ["LAZY_COMMANDS", "LazyGroup", "whole_summaries"]


# Imported only when run or listed: `render` loads no simulator, uvicorn or batch code.
LAZY_COMMANDS = {
    **{name: f"worker.cli.jobs:{name}" for name in ("jobs", "resubmit", "timing")},
    "simulate": "simulator.cli:simulate",
    "batch": "worker.cli.batch:batch",
    "schedule": "worker.cli.schedule:schedule",
    "storage": "worker.cli.storage:storage",
    "retake": "worker.cli.retake:retake",
    "models": "worker.cli.setup:models",
    "doctor": "worker.cli.setup:doctor",
    "keys": "worker.cli.keys:keys",
}


# Commands that start a stack of their own (never another's), and commands that use no Redis.
OWN_STACK = frozenset({"dev", "demo", "simulate"})
NO_REDIS = frozenset({"models"})


class LazyGroup(click.Group):
    """A group that imports a command's module when the command is first asked for, finds
    ``relaydance dev``'s Redis, and turns a Redis outage into one plain line (exit 3)."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if name not in OWN_STACK:
            from worker.cli.devenv import use_dev_env

            note = use_dev_env()
            quiet = name in NO_REDIS or {"--help", "--dry-run"} & set(rest)
            if note and not quiet:
                click.echo(note, err=True)
        return name, command, rest

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            from worker.errors import NotDurable
            from worker.infra.outage import is_redis_outage

            cause = exc.__cause__
            if isinstance(exc, NotDurable):  # replicas did not confirm: nothing paid hangs on it
                click.echo(f"error: {exc}", err=True)
                sys.exit(EXIT_UNKNOWN)
            if is_redis_outage(exc):
                die_unreachable(exc)
            if cause is not None and is_redis_outage(cause):  # e.g. EnqueueFailed
                die_unreachable(cause, [str(exc)])
            raise

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in LAZY_COMMANDS:
            module, _, attr = LAZY_COMMANDS[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), attr)
            whole_summaries(command)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)


def whole_summaries(command: click.Command) -> None:
    """Give each command a summary that is never cut short."""
    # click cuts a summary it derives to fit the terminal ("Per key alias: configured
    # and..."); a summary given explicitly is wrapped instead, never cut.
    if command.short_help is None and command.help:
        first = command.help.split("\n\n", 1)[0]
        command.short_help = " ".join(first.split())
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            whole_summaries(sub)
