"""``relaydance jobs``, ``resubmit`` and ``timing``: what an operator sees and decides.

A job in ``submit_unknown`` is one whose submission may have reached the provider: its
reply was lost, so the task may exist and be billed. The fleet never submits it again on
its own. ``relaydance jobs --state submit_unknown`` lists them with the evidence;
``relaydance resubmit JOB_ID`` submits one again (it may pay twice: the first task, if it
exists, is billed too); ``relaydance cancel JOB_ID`` gives up on it.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from worker.cli.errors import EXIT_FAILED, EXIT_OK, die, die_not_found
from worker.job.record import JobState

if TYPE_CHECKING:
    from worker.job.engine import Engine
    from worker.job.listing import JobFilter, Row

__all__ = ["jobs", "resubmit", "timing"]

MAX_WINDOWS = 5  # a sparse filter reads at most this many windows of records per command
_DECIDE = (
    "\nEach may already be generating (and billed) at the provider. Decide per job:\n"
    "  relaydance resubmit JOB_ID   submit again (may pay twice)\n"
    "  relaydance cancel JOB_ID     give up (a task that exists may still be billed)"
)


@click.command("jobs", short_help="List jobs, newest first, in any state; filter and page.")
@click.option(
    "--state",
    type=click.Choice([s.value for s in JobState]),
    help="Only jobs now in this state (any state: done, failed, canceled too).",
)
@click.option("--since", help="Only jobs created since: 30m, 2h, 7d, or a UTC date or time.")
@click.option("--batch", "batch", help="Only the jobs of this batch (id or name).")
@click.option("--key", help="Only the jobs of this API key alias.")
@click.option("--model", help="Only the jobs of this model.")
@click.option(
    "--limit",
    type=click.IntRange(1, 1000),
    default=50,
    show_default=True,
    help="At most this many jobs.",
)
@click.option("--after", help="Go on after this job id (the last one a previous page listed).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per job, per line.")
def jobs(
    state: str | None, since: str | None, batch: str | None, key: str | None,
    model: str | None, limit: int, after: str | None, as_json: bool,
) -> None:  # fmt: skip
    """List jobs newest first, in any state, from the index the jobs page pages through.

    Without --state every state is listed. Jobs whose submission is unknown
    (submit_unknown) are listed with the evidence and what to decide.
    """
    from worker.job.engine import get_engine
    from worker.job.listing import JobFilter

    engine = get_engine()
    wanted = JobFilter(state=state or "", batch=_batch_id(engine, batch), alias=key or "",
                       model=model or "", after=after or "", since=_since(since))  # fmt: skip
    rows, cursor = _collect(engine, wanted, limit)
    if as_json:
        _print_json(engine, rows)
    else:
        _print_rows(rows, state=state)
    if cursor:
        given = {"--state": state, "--since": since, "--batch": batch, "--key": key,
                 "--model": model, "--limit": str(limit), "--after": cursor}  # fmt: skip
        options = " ".join(f"{flag} {shlex.quote(v)}" for flag, v in given.items() if v)
        click.echo(f"more: relaydance jobs {options}{' --json' if as_json else ''}", err=True)
    if not as_json and state is None and engine.store.in_state(JobState.SUBMIT_UNKNOWN):
        count = len(engine.store.in_state(JobState.SUBMIT_UNKNOWN))
        click.echo(f"{count} job(s) may have been billed without an answer (submit_unknown): "
                   "relaydance jobs --state submit_unknown", err=True)  # fmt: skip


def _since(text: str | None) -> float | None:
    from worker.infra.timefmt import parse_since

    if text is None:
        return None
    try:
        return parse_since(text, now=time.time())
    except ValueError as exc:
        die(f"--since: {exc}")


def _batch_id(engine: Engine, batch: str | None) -> str:
    from worker.batch.store import BatchNotFound, BatchStore

    if not batch:
        return ""
    try:
        return BatchStore(engine.redis).resolve(batch)
    except BatchNotFound as exc:
        die_not_found(str(exc).strip("'\""))


def _collect(engine: Engine, wanted: JobFilter, limit: int) -> tuple[list[Row], str]:
    """Up to ``limit`` rows, and the job id the next page starts after ('' at the end)."""
    from worker.job.listing import list_jobs

    rows: list[Row] = []
    cursor = wanted.after
    for _ in range(MAX_WINDOWS):
        page = list_jobs(engine.redis, engine.store, replace(wanted, after=cursor),
                         page_size=limit - len(rows))  # fmt: skip
        rows += page.rows
        cursor = page.next_after
        if len(rows) >= limit or not cursor:
            break
    return rows, cursor


def _print_json(engine: Engine, rows: list[Row]) -> None:
    jobs = engine.store.get_many([row.id for row in rows])
    for row, job in zip(rows, jobs, strict=True):
        if job is not None:
            extra: dict[str, Any] = {"created_at": row.created_at, "prompt": row.prompt}
            click.echo(json.dumps({**job.summary(), **extra}))


def _print_rows(rows: list[Row], *, state: str | None) -> None:
    if not rows:
        click.echo(f"no job is {state}" if state else "no job matches")
        return
    for row in rows:
        when = datetime.fromtimestamp(row.created_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        cost = row.actual_cost if row.actual_cost is not None else row.cost
        money = "-" if cost is None else f"${cost:.2f}"
        prompt = row.prompt if len(row.prompt) <= 60 else row.prompt[:59] + "…"
        click.echo(f"{when}  {row.id}  {row.state:<16} key={row.alias}  {row.model} "
                   f"{row.length}  {money}  {prompt!r}")  # fmt: skip
        if row.error:
            label = "evidence" if row.state == JobState.SUBMIT_UNKNOWN.value else "error"
            click.echo(f"    {label}: {row.error}")
    if state == JobState.SUBMIT_UNKNOWN.value:
        click.echo(_DECIDE, err=True)


@click.command("resubmit")
@click.argument("job_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def resubmit(job_id: str, yes: bool) -> None:
    """Submit a job in submit_unknown again, knowing it may pay twice."""
    from worker.api import resubmit as resubmit_job
    from worker.job.submit import SubmitRefused

    if not yes:
        click.confirm(
            f"Job {job_id}'s first submission may already exist (and be billed) at the "
            "provider. Submit it again, possibly paying twice?",
            abort=True,
            err=True,
        )
    try:
        job = resubmit_job(job_id)
    except SubmitRefused as exc:
        die(str(exc))
    click.echo(f"job {job.id} resubmitted; now {job.state.value}")
    sys.exit(EXIT_OK if job.state is not JobState.FAILED else EXIT_FAILED)


@click.command("timing")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per model and length.")
def timing(as_json: bool) -> None:
    """What the fleet learned of generation times: when it polls each model and length."""
    from worker.job.engine import get_engine
    from worker.job.timing import first_poll_delay_for

    engine = get_engine()
    minimum = engine.settings.poll_interval_min
    rows = []
    for model, seconds, estimate in engine.timing.all():
        rows.append({
            "model": model,
            "seconds": seconds,
            "expected_s": round(estimate.seconds, 2),
            "deviation_s": None if estimate.deviation is None else round(estimate.deviation, 2),
            "observations": estimate.observations,
            "prior_s": round(estimate.prior, 2),
            "first_poll_s": round(first_poll_delay_for(estimate, minimum=minimum), 2),
        })  # fmt: skip
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    if not rows:
        click.echo("nothing learned yet: first polls use the catalogue's priors")
        return
    header = ("model", "s", "expected", "deviation", "jobs", "prior", "first poll")
    click.echo("{:<34} {:>3} {:>9} {:>9} {:>5} {:>7} {:>10}".format(*header))
    for r in rows:
        dev = "-" if r["deviation_s"] is None else f"{r['deviation_s']:.1f}s"
        click.echo(
            f"{r['model']:<34} {r['seconds']:>3} {r['expected_s']:>8.1f}s {dev:>9} "
            f"{r['observations']:>5} {r['prior_s']:>6.0f}s {r['first_poll_s']:>9.1f}s"
        )
