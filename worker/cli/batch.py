"""``relaydance batch ...`` and ``relaydance schedule ...``: an entry point (uses ``tasks``).

Exit codes: 0 success (every line done, with --wait), 1 some line did not end done,
2 invalid input or configuration (nothing was enqueued).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click

from config.settings import SettingsError
from worker.batch import (
    BatchFileError,
    BatchNotFound,
    BatchPlan,
    InvalidBatch,
    ParsedBatch,
    Submission,
    plan_batch,
    progress_line,
    read_batch_file,
    render_report,
)
from worker.batch.budget import to_micros
from worker.cli.errors import EXIT_FAILED, die, die_invalid, die_not_found, redis_asked
from worker.cli.follow import follow_batch
from worker.errors import InvalidRequest

__all__ = ["batch", "schedule"]


def _die_invalid(exc: Exception, *, source: str = "the batch") -> NoReturn:
    if isinstance(exc, InvalidBatch):
        count = len(exc.lines)
        die(
            f"{source}: {count} invalid line{'s' if count != 1 else ''}; nothing was enqueued "
            "(fix them, or pass --skip-invalid to submit the valid lines)",
            [msg for bad in exc.lines for msg in bad.messages()],
        )
    die_invalid(exc, what="the request is invalid")


def _read(path: str, *, key: str) -> ParsedBatch:
    try:
        return read_batch_file(path, key=key)
    except BatchFileError as exc:
        die(f"cannot use {path}", [f"{name}: {message}" for name, message in exc.problems])


def _echo_invalid_skipped(parsed: ParsedBatch, *, would: bool = False) -> None:
    """The lines --skip-invalid leaves out, each problem once, on stderr."""
    if parsed.invalid:
        count = len(parsed.invalid)
        verb = "would skip" if would else "skipped"
        click.echo(f"{verb} {count} invalid line{'s' if count != 1 else ''} (--skip-invalid):",
                   err=True)  # fmt: skip
        for message in parsed.messages():
            click.echo(f"  {message}", err=True)


def _summary(sub: Submission, *, as_json: bool) -> None:
    if as_json:
        return
    verb = "created" if sub.created else "continued"
    parts = [f"{sub.lines} valid lines", f"{sub.unique} distinct requests"]
    if sub.duplicates:
        parts.append(f"{sub.duplicates} duplicate lines share a job")
    parts.append(f"{sub.enqueued} enqueued")
    if sub.reused:
        parts.append(f"{sub.reused} reused")
    if sub.skipped_budget:
        parts.append(f"{sub.skipped_budget} skipped_budget")
    parts.append(f"committed ${sub.committed_usd:.2f} of ${sub.estimated_usd:.2f} estimated")
    click.echo(f"batch {sub.batch_id} {verb}: " + ", ".join(parts), err=True)


def _submission_json(sub: Submission) -> str:
    return json.dumps({
        "batch_id": sub.batch_id, "created": sub.created, "lines": sub.lines,
        "unique": sub.unique, "duplicates": sub.duplicates, "enqueued": sub.enqueued,
        "reused": sub.reused, "skipped_budget": sub.skipped_budget,
        "invalid_lines": [bad.line for bad in sub.invalid],
        "estimated_usd": sub.estimated_usd, "committed_usd": sub.committed_usd,
    })  # fmt: skip


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
    parsed = _read(file, key=key)
    if dry_run:  # a dry run shows the invalid lines with the rest, then refuses as a submit would
        _dry_run(parsed, budget=budget, as_json=as_json, skip_invalid=skip_invalid,
                 naming=(output_name, name, key))  # fmt: skip
    if parsed.invalid and not skip_invalid:
        _die_invalid(InvalidBatch(parsed.invalid), source=file)
    if dry_run:
        return
    from worker.api import enqueue_batch

    try:
        sub = enqueue_batch(parsed, key=key, budget=budget, name=name, reuse=reuse,
                            skip_invalid=skip_invalid, on_done=on_done,
                            output_name=output_name)  # fmt: skip
    except (InvalidRequest, SettingsError) as exc:
        _die_invalid(exc, source=file)
    click.echo(_submission_json(sub) if as_json and not wait_ else sub.batch_id)
    _summary(sub, as_json=as_json)
    if not as_json:
        _echo_invalid_skipped(parsed)
    if wait_:
        sys.exit(follow_batch(sub.batch_id, timeout=timeout, as_json=as_json))


def _dry_run(
    parsed: ParsedBatch, *, budget: float | None, as_json: bool, skip_invalid: bool,
    naming: tuple[str | None, str | None, str],
) -> None:  # fmt: skip
    try:
        plan = plan_batch(parsed)
    except SettingsError as exc:
        die(str(exc))
    names = _dry_run_names(plan, naming)
    admitted = plan.fitting(None if budget is None else to_micros(budget))
    estimated = plan.total_micros / 1e6
    within = sum(item.cost_micros for item in admitted) / 1e6
    if as_json:
        click.echo(json.dumps({
            "lines": len(plan.line_items), "unique": len(plan.items),
            "duplicates": plan.duplicates, "invalid_lines": [b.line for b in plan.invalid],
            "estimated_usd": estimated, "budget_usd": budget,
            "within_budget": len(admitted), "within_budget_usd": within,
            "skipped_budget": len(plan.items) - len(admitted), "output_names": names,
        }))  # fmt: skip
        return
    total = len(plan.line_items) + len(plan.invalid)
    invalid = ""
    if plan.invalid:
        invalid = f", {len(plan.invalid)} invalid " + (
            "(left out: --skip-invalid)" if skip_invalid else "(a submit would be refused)"
        )
    click.echo(
        f"{total} lines: {len(plan.line_items)} valid ({len(plan.items)} distinct requests, "
        f"{plan.duplicates} duplicates){invalid}: estimated ${estimated:.2f} "
        "(not enqueued: --dry-run)"
    )
    if budget is not None:
        click.echo(
            f"budget ${budget:.2f}: {len(admitted)} request{'s' if len(admitted) != 1 else ''} "
            f"(${within:.2f}) would be "
            f"submitted, {len(plan.items) - len(admitted)} skipped_budget"
        )
    if names:
        shown = ", ".join(f"{n}.mp4" for n in names[:3]) + (", ..." if len(names) > 3 else "")
        click.echo(f"clips named: {shown}")
    if skip_invalid:
        _echo_invalid_skipped(parsed, would=True)


def _dry_run_names(plan: BatchPlan, naming: tuple[str | None, str | None, str]) -> list[str]:
    """The names --output-name would give (the batch's id not known yet: a stand-in)."""
    from worker.batch.naming import check_plan_names, job_name
    from worker.batch.store import BatchRecord, Item

    template, name, key = naming
    if template is None or not plan.items:
        return []
    try:
        check_plan_names(template, plan, batch=name, key=key, now=time.time())
    except InvalidRequest as exc:
        _die_invalid(exc)
    record = BatchRecord(id="rdb_<id>", name=name, alias=key, created_at=time.time(), source="",
                         digest="", lines=plan.line_items, invalid=[], line_ids=plan.line_ids,
                         output_template=template)  # fmt: skip
    return [
        job_name(record, Item(i.index, i.fingerprint, i.cost_micros,
                              i.request.model_dump(mode="json"), i.alias), "rdj_<job id>") or ""
        for i in plan.items
    ]  # fmt: skip


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
        _die_invalid(exc)
    click.echo(sub.batch_id)
    _summary(sub, as_json=False)
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
    parsed = _read(file, key=key)
    try:
        added = _schedules().add(
            name, cron=cron, parsed=parsed, key=key, budget=budget, replace=replace
        )
    except (InvalidRequest, SettingsError) as exc:
        _die_invalid(exc, source=file)
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
