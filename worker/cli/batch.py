"""``relaydance batch ...``: an entry point (uses the producer API, ``worker.api``).

Exit codes: 0 success (every line done, with --wait), 1 some line did not end done,
2 invalid input or configuration (nothing was enqueued).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import NoReturn

import click

from config.settings import SettingsError
from worker.batch import BatchNotFound, InvalidBatch, progress_line, render_report
from worker.cli.batch_output import (
    die_invalid_batch,
    echo_invalid_skipped,
    echo_summary,
    read_batch,
    show_dry_run,
    submission_json,
)
from worker.cli.errors import die_not_found
from worker.cli.follow import follow_batch
from worker.errors import InvalidRequest

__all__ = ["batch"]

_CHAINS_SHOWN = 20  # a storyboard's clips listed beside their stills; the report has all


@click.group(short_help="Batches of render requests: submit, status, cancel, resume, report.")
def batch() -> None:
    """Submit, follow, cancel, resume and report on batches of render requests."""


@batch.command(short_help="Validate a JSON Lines or CSV file whole, then enqueue it.")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--key", default="default", show_default=True, help="API key alias of lines with no key column."
)
@click.option("--budget", type=float, help="Spend cap in USD; lines past it end skipped_budget.")
@click.option("--name", help="Batch name; submitting the same name again resumes it.")
@click.option("--wait", "wait_", is_flag=True, help="Show progress until every line is final.")
@click.option("--timeout", type=float, default=24 * 3600, show_default=True, help="For --wait, s.")
@click.option(
    "--dry-run", is_flag=True, help="Print the count and estimated cost; enqueue nothing."
)
@click.option(
    "--output-name",
    help='Name clips by a template, e.g. "{batch}/{line:04d}-{slug}" (fields: batch, batch_id, '
    "line, id, slug, model, seconds, key, date, job); default: <job id>.mp4.",
)
@click.option("--reuse", is_flag=True, help="Reuse earlier finished renders of the same request.")
@click.option("--skip-invalid", is_flag=True, help="Submit the valid lines, list the others.")
@click.option(
    "--on-done",
    help="Celery task sent each job's summary (with batch_id) when the job ends: done, "
    "failed or canceled.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def submit(
    file: str, key: str, budget: float | None, name: str | None, wait_: bool, timeout: float,
    dry_run: bool, output_name: str | None, reuse: bool, skip_invalid: bool,
    on_done: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Validate a JSON Lines or CSV batch file and enqueue it (prints the batch id)."""
    parsed = read_batch(file, key=key)
    if dry_run:  # a dry run shows the invalid lines with the rest, then refuses as a submit would
        show_dry_run(parsed, budget=budget, as_json=as_json, skip_invalid=skip_invalid,
                     naming=(output_name, name, key))  # fmt: skip
    if parsed.invalid and not skip_invalid:
        die_invalid_batch(InvalidBatch(parsed.invalid), source=file)
    if dry_run:
        return
    from worker.api import enqueue_batch

    try:
        sub = enqueue_batch(parsed, key=key, budget=budget, name=name, reuse=reuse,
                            skip_invalid=skip_invalid, on_done=on_done,
                            output_name=output_name)  # fmt: skip
    except (InvalidRequest, SettingsError) as exc:
        die_invalid_batch(exc, source=file)
    click.echo(submission_json(sub) if as_json and not wait_ else sub.batch_id)
    echo_summary(sub, as_json=as_json)
    if not as_json:
        echo_invalid_skipped(parsed)
    if wait_:
        sys.exit(follow_batch(sub.batch_id, timeout=timeout, as_json=as_json))


def _not_found(exc: Exception) -> NoReturn:
    die_not_found(str(exc).strip("'\""))


@batch.command()
@click.argument("batch_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(batch_id: str, as_json: bool) -> None:
    """Show a batch's progress by id or name."""
    from worker.api import get_batch

    try:
        info = get_batch(batch_id)
    except BatchNotFound as exc:
        _not_found(exc)
    if as_json:
        click.echo(json.dumps(info.to_dict()))
        return
    click.echo(f"batch {info.id}" + (f" ({info.name})" if info.name else "") + f" key={info.alias}")
    click.echo(progress_line(info, elapsed=0.0, done_before=info.done))
    click.echo("lines: " + ", ".join(f"{n} {group.label}" for group, n in info.grouped()))
    click.echo("by state: " + ", ".join(f"{k}={v}" for k, v in sorted(info.counts.items())))
    if info.invalid:
        click.echo(f"invalid lines skipped: {', '.join(str(b.line) for b in info.invalid)}")
    for alias, why in info.paused.items():
        click.echo(f"key {alias} PAUSED: {why} (relaydance keys)")
    chains = info.chains()
    for chain in chains[:_CHAINS_SHOWN]:
        click.echo(f"storyboard: {chain}")
    if len(chains) > _CHAINS_SHOWN:
        click.echo(f"storyboard: {len(chains) - _CHAINS_SHOWN} more clips made from stills "
                   "(batch report: made_from)")  # fmt: skip
    click.echo("finished" if info.finished else ("canceled" if info.canceled else "in progress"))


@batch.command()
@click.argument("batch_id")
def cancel(batch_id: str) -> None:
    """Stop enqueueing a batch and cancel its jobs not final yet."""
    from worker.api import cancel_batch

    try:
        count = cancel_batch(batch_id)
    except BatchNotFound as exc:
        _not_found(exc)
    click.echo(f"canceled {count} jobs; resume with: relaydance batch resume {batch_id}")


@batch.command(short_help="Re-queue failed, canceled and budget-skipped lines.")
@click.argument("batch_id")
@click.option("--budget", type=float, help="A new spend cap in USD.")
@click.option("--wait", "wait_", is_flag=True, help="Show progress until every line is final.")
@click.option("--timeout", type=float, default=24 * 3600, show_default=True, help="For --wait, s.")
def resume(batch_id: str, budget: float | None, wait_: bool, timeout: float) -> None:
    """Re-queue failed, canceled and budget-skipped lines; finished lines stay."""
    from worker.api import resume_batch

    try:
        sub = resume_batch(batch_id, budget=budget)
    except BatchNotFound as exc:
        _not_found(exc)
    except InvalidRequest as exc:
        die_invalid_batch(exc)
    click.echo(sub.batch_id)
    echo_summary(sub, as_json=False)
    if wait_:
        sys.exit(follow_batch(sub.batch_id, timeout=timeout, as_json=False))


@batch.command(short_help="One row per line: job id, state, output, sha256, cost, error.")
@click.argument("batch_id")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json"]),
    default="csv",
    show_default=True,
    help="Report format.",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here, not stdout.")
def report(batch_id: str, fmt: str, output: str | None) -> None:
    """One row per line: job id, state, output path and URI, sha256, seconds, cost, error."""
    from worker.api import batch_report

    try:
        info, rows = batch_report(batch_id)
    except BatchNotFound as exc:
        _not_found(exc)
    text = render_report(info, rows, fmt="json" if fmt == "json" else "csv")
    if output:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"wrote {len(rows)} rows to {output}", err=True)
    else:
        click.echo(text, nl=False)
