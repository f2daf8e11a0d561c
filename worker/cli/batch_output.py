"""What ``relaydance batch`` and ``relaydance schedule`` print: reading a batch file,
invalid lines, a submission's summary, and a dry run's count, cost and clip names."""

from __future__ import annotations

import json
import time
from typing import NoReturn

import click

from config.settings import SettingsError
from worker.batch import (
    BatchFileError,
    BatchPlan,
    InvalidBatch,
    ParsedBatch,
    Submission,
    plan_batch,
    read_batch_file,
)
from worker.batch.budget import to_micros
from worker.cli.errors import die, die_invalid
from worker.errors import InvalidRequest

__all__ = [
    "die_invalid_batch",
    "echo_invalid_skipped",
    "echo_summary",
    "read_batch",
    "show_dry_run",
    "submission_json",
]


def die_invalid_batch(exc: Exception, *, source: str = "the batch") -> NoReturn:
    if isinstance(exc, InvalidBatch):
        count = len(exc.lines)
        die(
            f"{source}: {count} invalid line{'s' if count != 1 else ''}; nothing was enqueued "
            "(fix them, or pass --skip-invalid to submit the valid lines)",
            [msg for bad in exc.lines for msg in bad.messages()],
        )
    die_invalid(exc, what="the request is invalid")


def read_batch(path: str, *, key: str) -> ParsedBatch:
    try:
        return read_batch_file(path, key=key)
    except BatchFileError as exc:
        die(f"cannot use {path}", [f"{name}: {message}" for name, message in exc.problems])


def echo_invalid_skipped(parsed: ParsedBatch, *, would: bool = False) -> None:
    """The lines --skip-invalid leaves out, each problem once, on stderr."""
    if parsed.invalid:
        count = len(parsed.invalid)
        verb = "would skip" if would else "skipped"
        click.echo(f"{verb} {count} invalid line{'s' if count != 1 else ''} (--skip-invalid):",
                   err=True)  # fmt: skip
        for message in parsed.messages():
            click.echo(f"  {message}", err=True)


def echo_summary(sub: Submission, *, as_json: bool) -> None:
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


def submission_json(sub: Submission) -> str:
    return json.dumps({
        "batch_id": sub.batch_id, "created": sub.created, "lines": sub.lines,
        "unique": sub.unique, "duplicates": sub.duplicates, "enqueued": sub.enqueued,
        "reused": sub.reused, "skipped_budget": sub.skipped_budget,
        "invalid_lines": [bad.line for bad in sub.invalid],
        "estimated_usd": sub.estimated_usd, "committed_usd": sub.committed_usd,
    })  # fmt: skip


def show_dry_run(
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
        echo_invalid_skipped(parsed, would=True)


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
        die_invalid_batch(exc)
    record = BatchRecord(id="rdb_<id>", name=name, alias=key, created_at=time.time(), source="",
                         digest="", lines=plan.line_items, invalid=[], line_ids=plan.line_ids,
                         output_template=template)  # fmt: skip
    return [
        job_name(record, Item(i.index, i.fingerprint, i.cost_micros,
                              i.request.model_dump(mode="json"), i.alias), "rdj_<job id>") or ""
        for i in plan.items
    ]  # fmt: skip
