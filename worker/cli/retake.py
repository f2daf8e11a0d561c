"""``relaydance retake JOB_ID [--prompt ...]``: render a finished job again, as a new job."""

from __future__ import annotations

import json
import sys

import click

from config.settings import SettingsError
from worker.cli.errors import die_invalid, die_not_found
from worker.cli.follow import follow_job
from worker.errors import InvalidRequest

__all__ = ["retake"]


@click.command("retake", short_help="Render a finished job again as a new job (a new take).")
@click.argument("job_id")
@click.option("--prompt", help="A new prompt for the take; default: the job's own.")
@click.option("--wait", "wait_", is_flag=True, help="Show progress until the new job is final.")
@click.option("--timeout", type=float, default=1800, show_default=True, help="For --wait, s.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def retake(job_id: str, prompt: str | None, wait_: bool, timeout: float, as_json: bool) -> None:
    """Render a finished job again as a new job, optionally with a new prompt (prints its id).

    The request is validated as any request is. The jobs are linked both ways (retake_of,
    retakes); a batch's job is that line's next take, and its cost counts against the
    batch's budget. Exit 2 when it cannot be made (nothing is enqueued).
    """
    from worker.api import JobNotFound
    from worker.api import retake as retake_job

    try:
        new_id = retake_job(job_id, prompt=prompt)
    except JobNotFound as exc:
        die_not_found(str(exc))
    except (InvalidRequest, SettingsError) as exc:
        die_invalid(exc, what=f"job {job_id} cannot be retaken")
    if not wait_:
        click.echo(json.dumps({"job_id": new_id, "retake_of": job_id}) if as_json else new_id)
        return
    if not as_json:
        click.echo(f"job {new_id} enqueued (a retake of {job_id})", err=True)
    sys.exit(follow_job(new_id, timeout=timeout, as_json=as_json))
