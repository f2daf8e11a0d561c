"""``relaydance schedule ...``: recurring batches run by beat; an entry point.

Exit codes: 0 success, 1 no such schedule, 2 invalid input or configuration.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from config.settings import SettingsError
from worker.cli.batch_output import die_invalid_batch, read_batch
from worker.cli.errors import EXIT_FAILED, redis_asked
from worker.errors import InvalidRequest

__all__ = ["schedule"]


@click.group()
def schedule() -> None:
    """Recurring batches run by beat (celery-redbeat)."""


def _schedules() -> Any:
    from worker import app
    from worker.batch.schedules import Schedules
    from worker.job.engine import get_engine

    return Schedules(get_engine(), app)


@schedule.command("add", short_help="Run a batch file's requests at each cron instant.")
@click.argument("name")
@click.option("--cron", required=True, help='Five cron fields (UTC), e.g. "0 2 * * *".')
@click.option("--file", "file", required=True, type=click.Path(dir_okay=False), help="Batch file.")
@click.option("--key", default="default", show_default=True, help="API key alias.")
@click.option("--budget", type=float, help="Spend cap in USD for each run.")
@click.option("--replace", is_flag=True, help="Replace a schedule of the same name.")
def schedule_add(
    name: str, cron: str, file: str, key: str, budget: float | None, replace: bool
) -> None:
    """Store a batch file's requests and run them as a batch at each cron instant."""
    parsed = read_batch(file, key=key)
    try:
        added = _schedules().add(
            name, cron=cron, parsed=parsed, key=key, budget=budget, replace=replace
        )
    except (InvalidRequest, SettingsError) as exc:
        die_invalid_batch(exc, source=file)
    when = added.next_run.isoformat() if added.next_run else "unknown"
    click.echo(f"schedule {name} added: {added.lines} lines, cron {cron!r}, next run {when}")


@schedule.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def schedule_list(as_json: bool) -> None:
    """Every schedule with its next run and its last batch."""
    found = _schedules().list()
    if as_json:
        click.echo(json.dumps([s.to_dict() for s in found]))
        return
    if not found:
        click.echo(f"no schedules ({redis_asked()})")
    for s in found:
        nxt = s.next_run.isoformat(timespec="minutes") if s.next_run else "-"
        budget = f" budget=${s.budget_usd:.2f}" if s.budget_usd is not None else ""
        click.echo(f"{s.name}: cron {s.cron!r} key={s.alias}{budget} lines={s.lines} "
                   f"runs={s.runs} next={nxt} last_batch={s.last_batch or '-'}")  # fmt: skip


@schedule.command("remove")
@click.argument("name")
def schedule_remove(name: str) -> None:
    """Delete a schedule (its past batches stay)."""
    if not _schedules().remove(name):
        click.echo(f"no schedule {name!r} ({redis_asked()})", err=True)
        sys.exit(EXIT_FAILED)
    click.echo(f"schedule {name} removed")
