"""The ``relaydance`` command line: an entry point, so it may use both ``tasks`` and ``worker``.

Exit codes (worker/cli/errors.py): 0 done (or enqueued without --wait), 1 failed or
canceled, 2 invalid input or configuration, 3 cannot tell (Redis unreachable, or --wait
ran out of time): the job may still finish.

The group (worker/cli/group.py) imports commands lazily, takes the Redis of a
``relaydance dev`` running in this project when REDIS_URL is not set explicitly, and
turns a Redis outage in any command into one plain line and exit 3, never a traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from config.settings import SettingsError, get_settings
from worker.cli.errors import EXIT_FAILED, EXIT_OK, die, die_invalid, die_not_found, redis_asked
from worker.cli.follow import follow_job
from worker.cli.group import LazyGroup, whole_summaries
from worker.cli.providers import (
    provider_body,
    provider_of,
    refuse_foreign_flags,
    request_fields,
)
from worker.errors import InvalidRequest
from worker.render.image_request import ImageRequest
from worker.render.pricing import estimate_cost
from worker.render.request import RenderRequest
from worker.render.validation import validate_request

__all__ = ["main"]


@click.group(cls=LazyGroup)
@click.version_option(package_name="relaydance-worker")
def main() -> None:
    """Render videos through RelayDance with a Celery + Redis worker fleet."""


@main.command(short_help="Validate a render request and enqueue it (prints the job id).")
@click.option(
    "--model",
    required=True,
    help="Model id; `relaydance models` lists every model with its lengths, ratios, "
    "resolutions, audio, reference limits and price.",
)
@click.option("--prompt", required=True, help="What to generate; cite media as @image1...")
@click.option(
    "--seconds", type=int, default=5, show_default=True, help="Clip length (per model: see models)."
)
@click.option("--n", type=int, help="Image models: how many stills (default 1).")
@click.option("--size", help="Image models: WIDTHxHEIGHT, e.g. 1024x1024.")
@click.option("--ratio", help="Aspect ratio, e.g. 16:9.")
@click.option("--resolution", help="480p, 720p or 1080p, as the model offers.")
@click.option("--generate-audio", is_flag=True, default=None, help="Ask for a soundtrack.")
@click.option("--image", "images", multiple=True, help="Reference image: URL or local path.")
@click.option("--video", "videos", multiple=True, help="Reference video: URL or local path.")
@click.option("--audio", "audio", multiple=True, help="Reference audio: URL or local path.")
@click.option("--first-frame", help="First frame image (frame mode, not with --image).")
@click.option("--last-frame", help="Last frame image (frame mode, not with --image).")
@click.option(
    "--mode",
    type=click.Choice(["keyframe", "reference"]),
    help="Kinovi: --image as first/last frames (keyframe, the default) or as references.",
)
@click.option(
    "--upscale", type=click.Choice(["4k"], case_sensitive=False), help="Kinovi: upscale to 4K."
)
@click.option("--key", default="default", show_default=True, help="API key alias (its provider).")
@click.option(
    "--on-done",
    help="Celery task name sent the job summary when the job ends (done, failed or canceled).",
)
@click.option("--wait", "wait_", is_flag=True, help="Show progress until the job is final.")
@click.option("--timeout", type=float, default=1800, show_default=True, help="For --wait, s.")
@click.option("--dry-run", is_flag=True, help="Print the request body and cost; enqueue nothing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def render(
    key: str,
    on_done: str | None,
    wait_: bool,
    timeout: float,
    dry_run: bool,
    as_json: bool,
    **fields: Any,
) -> None:
    """Validate a render request and enqueue it (prints the job id).

    An image model (e.g. grok-imagine-image) makes stills: --prompt, --n and --size.
    """
    ctx = click.get_current_context()
    given = {k for k in fields if ctx.get_parameter_source(k) is not ParameterSource.DEFAULT}
    data = request_fields(fields, given=given)
    provider = provider_of(key)
    refuse_foreign_flags(provider, key=key, fields=data)
    from worker.api import check_render, enqueue_checked  # entry point: the producer API

    try:  # checked (and its files sniffed) once: the enqueue takes it as it is
        checked = check_render(data, key=key, on_done=None if dry_run else on_done)
    except (InvalidRequest, SettingsError) as exc:
        die_invalid(exc)
    request = checked.request
    if dry_run:
        _print_dry_run(request, provider=provider, as_json=as_json)
        return
    try:
        job_id = enqueue_checked(checked)
    except (InvalidRequest, SettingsError) as exc:
        die_invalid(exc)
    if not wait_:
        click.echo(json.dumps({"job_id": job_id}) if as_json else job_id)
        return
    if not as_json:
        click.echo(f"job {job_id} enqueued ({request.summary()})", err=True)
    sys.exit(follow_job(job_id, timeout=timeout, as_json=as_json))


def _print_dry_run(request: RenderRequest | ImageRequest, *, provider: str, as_json: bool) -> None:
    body, uploads = provider_body(provider, request)
    try:
        cost = estimate_cost(request)
    except SettingsError as exc:
        die(str(exc))
    if as_json:
        click.echo(
            json.dumps(
                {"provider": provider, "body": body, "estimated_cost_usd": cost, "uploads": uploads}
            )
        )
        return
    click.echo(json.dumps(body, indent=2))
    if uploads:
        click.echo(f"uploads first: {', '.join(uploads)}")
    click.echo(f"estimated cost: ${cost:.2f} at {provider} (not enqueued: --dry-run)")


@main.command(short_help="Show a job's state, what it waits for and until when.")
@click.argument("job_id")
@click.option(
    "--json", "as_json", is_flag=True, help="Machine-readable: times as epoch and ISO 8601."
)
def status(job_id: str, as_json: bool) -> None:
    """Show a job's state, what it waits for and until when, and its record."""
    from worker.api import JobNotFound, get_job
    from worker.cli.status_view import status_lines, status_view
    from worker.job.engine import get_engine

    try:
        job = get_job(job_id)
    except JobNotFound as exc:
        die_not_found(str(exc))
    view = status_view(get_engine(), job)
    if as_json:
        click.echo(json.dumps(view))
        return
    for line in status_lines(view, now=time.time()):
        click.echo(line)


@main.command()
@click.argument("job_id")
def cancel(job_id: str) -> None:
    """Cancel a job that is not final yet."""
    from worker.api import JobNotFound
    from worker.api import cancel as cancel_job

    try:
        canceled = cancel_job(job_id)
    except JobNotFound as exc:
        die_not_found(str(exc))
    click.echo("canceled" if canceled else "already final; nothing to cancel")
    sys.exit(EXIT_OK if canceled else EXIT_FAILED)


@main.command(short_help="Per key: limits, slots in use, waiting, requests, 429s.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable: one object per key.")
def limits(as_json: bool) -> None:
    """Per key alias: configured and effective limit, slots in use, waiting, requests, 429s."""
    from worker.job.engine import get_engine

    rows = get_engine().limit_snapshots()
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        click.echo(f"no key aliases configured or seen ({redis_asked()})", err=True)
        return
    header = ("key", "configured", "effective", "in use", "waiting", "req/min", "429s/hour")
    click.echo("{:<16} {:>10} {:>9} {:>6} {:>7} {:>7} {:>9}".format(*header))
    for alias, row in rows.items():
        click.echo(
            f"{alias:<16} {row['configured']:>10} {row['effective']:>9} {row['in_use']:>6} "
            f"{row['waiting']:>7} {row['requests_last_minute']:>7} "
            f"{row['rate_limited_last_hour']:>9}"
        )
    for alias, row in rows.items():
        if row["paused"]:
            since = time.strftime("%H:%M:%S UTC", time.gmtime(row["paused_since"] or 0))
            click.echo(f"{alias}: PAUSED since {since}: {row['paused']} (relaydance keys)")


@main.command(short_help="Serve the webhook receiver; /metrics on loopback.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option("--workers", default=1, show_default=True, help="uvicorn worker processes.")
@click.option(
    "--open-ui-on-loopback",
    is_flag=True,
    help="With no UI credentials set, open the jobs page to loopback clients that come "
    "through no proxy. Anything forwarding a port here (socat, ssh -R) opens it to others.",
)
@click.option(
    "--forwarded-allow-ips",
    default=None,
    help="Proxies whose X-Forwarded-For/-Proto are believed; default RELAYDANCE_TRUSTED_PROXIES.",
)
def web(
    host: str, port: int, workers: int, open_ui_on_loopback: bool, forwarded_allow_ips: str | None
) -> None:
    """Serve the webhook receiver (the Procfile's web process), and /metrics on its own
    listener, loopback by default (RELAYDANCE_METRICS_BIND, RELAYDANCE_METRICS_PORT)."""
    from worker.infra.logs import setup_logging
    from worker.web.app import serve, web_options_problem

    problem = web_options_problem(host, workers=workers, open_ui_on_loopback=open_ui_on_loopback)
    if problem:
        raise click.UsageError(problem)
    setup_logging(json=get_settings().log_json)
    serve(host, port, workers=workers, open_ui_on_loopback=open_ui_on_loopback,
          forwarded_allow_ips=forwarded_allow_ips)  # fmt: skip


@main.command()
@click.option("--pool", default="threads", show_default=True, help="Worker pool.")
@click.option("--concurrency", default=8, show_default=True, help="Worker concurrency.")
def dev(pool: str, concurrency: int) -> None:
    """Run the whole stack in the foreground until Ctrl-C."""
    from worker.cli.devenv import DEV_ENV, read_dev_env, remove_dev_env, write_dev_env
    from worker.cli.devstack import DevStack

    running = read_dev_env(Path.cwd() / DEV_ENV)
    if running is not None and running.alive():
        die(f"relaydance dev already runs in this directory (pid {running.pid}); its other "
            "terminals use it. Stop it first, or run this one in another directory")  # fmt: skip
    stack = DevStack(pool=pool, concurrency=concurrency)
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    # Ctrl-C and SIGTERM both stop it; SIGINT is handled explicitly because a parent may
    # have started this process with SIGINT ignored, which Python would then leave as is.
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with stack:
        env_file = write_dev_env(Path.cwd(), stack.environment(), pid=os.getpid())
        try:
            for note in stack.notes:
                click.echo(f"relaydance dev: {note}", err=True)
            click.echo(f"relaydance dev: environment in {env_file}: relaydance commands in "
                       "other terminals here use it", err=True)  # fmt: skip
            click.echo("relaydance dev: worker and beat running; Ctrl-C stops", err=True)
            while not stopping and stack.alive():
                time.sleep(0.5)
            click.echo("relaydance dev: stopping", err=True)
        finally:
            remove_dev_env(env_file, pid=os.getpid())


@main.command(short_help="Start the stack, render one clip, print the mp4 path, stop.")
@click.option(
    "--model", default="doubao-seedance-2-0-fast-260128", show_default=True, help="Model id."
)
@click.option(
    "--prompt",
    default="A paper boat drifts down a rain-soaked street, cinematic",
    help="What to generate.",
)
@click.option("--seconds", default=5, show_default=True, help="Clip length.")
@click.option("--timeout", default=300.0, show_default=True, help="Give up after this many s.")
def demo(model: str, prompt: str, seconds: int, timeout: float) -> None:
    """Start the stack, render one clip, print the mp4 path, stop."""
    from worker.cli.devstack import DevStack

    try:
        request = validate_request({"model": model, "prompt": prompt, "seconds": seconds})
    except InvalidRequest as exc:
        die_invalid(exc)
    log_file = Path(tempfile.mkdtemp(prefix="relaydance-demo-")) / "fleet.log"
    code = EXIT_FAILED
    try:
        with DevStack(log_file=log_file) as stack:
            for note in stack.notes:
                click.echo(f"demo: {note}", err=True)
            click.echo(f"demo: worker and beat logs in {log_file}", err=True)
            from worker.api import enqueue_render

            job_id = enqueue_render(request)
            click.echo(f"demo: job {job_id} enqueued ({request.summary()})", err=True)
            code = follow_job(job_id, timeout=timeout, as_json=False)
    finally:
        if code == EXIT_OK:  # a failed demo keeps its logs, the evidence
            shutil.rmtree(log_file.parent, ignore_errors=True)
        else:
            click.echo(f"demo: logs kept in {log_file}", err=True)
    sys.exit(code)


whole_summaries(main)


if __name__ == "__main__":  # pragma: no cover
    main()
