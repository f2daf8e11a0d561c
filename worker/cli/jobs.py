"""``relaydance jobs``, ``resubmit`` and ``timing``: what an operator sees and decides.

A job in ``submit_unknown`` is one whose submission may have reached the provider: its
reply was lost, so the task may exist and be billed. The fleet never submits it again on
its own. ``relaydance jobs --state submit_unknown`` lists them with the evidence;
``relaydance resubmit JOB_ID`` submits one again (it may pay twice: the first task, if it
exists, is billed too); ``relaydance cancel JOB_ID`` gives up on it.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

import click

from worker.cli.errors import EXIT_FAILED, EXIT_OK, die
from worker.job.record import FINAL_STATES, JobState

__all__ = ["jobs", "resubmit", "timing"]

_LISTED = [s.value for s in JobState if s not in FINAL_STATES]


@click.command("jobs")
@click.option(
    "--state",
    "state",
    type=click.Choice(_LISTED),
    default=JobState.SUBMIT_UNKNOWN.value,
    show_default=True,
    help="List the jobs now in this (non-final) state.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per job, per line.")
def jobs(state: str, as_json: bool) -> None:
    """List the jobs in a state, e.g. those whose submission is unknown."""
    from worker.job.engine import get_engine

    store = get_engine().store
    ids = store.in_state(JobState(state))
    found = [job for job in store.get_many(ids) if job is not None]
    if as_json:
        for job in found:
            click.echo(json.dumps(job.summary()))
        return
    if not found:
        click.echo(f"no job is {state}")
        return
    for job in found:
        since = job.times.get(state, job.updated_at)
        when = datetime.fromtimestamp(since, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        line = f"{job.id}  key={job.alias}  model={job.request.get('model')}  since {when}"
        if job.cost:
            line += f"  ${job.cost:.2f}"
        click.echo(line)
        if job.state is JobState.SUBMIT_UNKNOWN and job.error_message:
            click.echo(f"    evidence: {job.error_message}")
    if state == JobState.SUBMIT_UNKNOWN.value:
        click.echo(
            "\nEach may already be generating (and billed) at the provider. Decide per job:\n"
            "  relaydance resubmit JOB_ID   submit again (may pay twice)\n"
            "  relaydance cancel JOB_ID     give up (a task that exists may still be billed)",
            err=True,
        )


@click.command("resubmit")
@click.argument("job_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def resubmit(job_id: str, yes: bool) -> None:
    """Submit a job in submit_unknown again, knowing it may pay twice."""
    from tasks import resubmit as resubmit_job
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
