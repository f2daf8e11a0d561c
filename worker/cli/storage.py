"""``relaydance storage``: check that the output takes writes; presign a finished clip."""

from __future__ import annotations

import json
import sys

import click

from config.settings import SettingsError, get_settings
from worker.cli.errors import EXIT_FAILED, die
from worker.errors import StorageError

__all__ = ["storage"]


@click.group()
def storage() -> None:
    """The output storage: a local directory or an S3-compatible bucket."""


@storage.command("check")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def check(as_json: bool) -> None:
    """Verify that finished clips can be written (exit 0), leaving nothing behind.

    Workers run the same check at start and refuse to run when it fails.
    """
    from worker.storage import check_output

    try:
        settings = get_settings()
        done = check_output(settings)
    except SettingsError as exc:
        die(str(exc))
    except StorageError as exc:
        if as_json:
            click.echo(json.dumps({"ok": False, "code": exc.code, "error": str(exc)}))
        else:
            click.echo(f"error: the output is not writable: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    click.echo(json.dumps({"ok": True, "checked": done}) if as_json else f"ok: {done}")


@storage.command("url")
@click.argument("job_id")
@click.option("--expires-in", type=click.IntRange(1, 7 * 24 * 3600), help="Seconds.")
def url(job_id: str, expires_in: int | None) -> None:
    """Print a time-limited presigned URL of a finished job's clip in a bucket."""
    from worker.api import JobNotFound, clip_url, get_job

    try:
        job = get_job(job_id)
        link = clip_url(job, expires_in=expires_in)
    except JobNotFound as exc:
        die(str(exc))
    except StorageError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    if link is None:
        where = job.output_path or "not stored yet"
        click.echo(f"job {job_id} is {job.state.value}; no bucket URL ({where})", err=True)
        sys.exit(EXIT_FAILED)
    click.echo(link)
