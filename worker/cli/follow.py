"""Following a job (``render --wait``, ``demo``) or a batch (``batch --wait``) until it is
final, with one progress display for both.

On a terminal the progress line is rewritten in place. Off one (a log file, CI) a line is
printed when what it counts moves, and otherwise at most every ``QUIET_EVERY`` seconds, so
a long wait leaves a short, readable log. ``--json`` prints no progress.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from worker.cli.errors import EXIT_FAILED, EXIT_OK

if TYPE_CHECKING:
    from worker.batch import BatchStatus

__all__ = ["QUIET_EVERY", "Progress", "follow_batch", "follow_job"]

QUIET_EVERY = 10.0  # without a terminal, print progress at most this often unless it moved

T = TypeVar("T")


class Progress:
    """One progress line on stderr while something is followed."""

    def __init__(self, *, quiet: bool) -> None:
        self.quiet = quiet
        self.live = sys.stderr.isatty() and not quiet
        self.started = time.monotonic()
        self._text = ""
        self._at = 0.0
        self._moved: object = None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def show(self, text: str, *, moved: object) -> None:
        """Show ``text``; ``moved`` is what it counts (off a terminal, a change prints it)."""
        if self.quiet:
            return
        now = time.monotonic()
        if self.live:
            click.echo("\r" + text.ljust(len(self._text)), nl=False, err=True)
        elif moved != self._moved or now - self._at >= QUIET_EVERY:
            click.echo(text, err=True)
        else:
            return
        self._text, self._at, self._moved = text, now, moved

    def follow(self, wait: Callable[[], T]) -> T | None:
        """Run ``wait`` (which calls :meth:`show`); on its :class:`TimeoutError`, say so and
        return None."""
        try:
            result = wait()
        except TimeoutError as exc:
            click.echo(f"\n{exc}" if self.live else str(exc), err=True)
            return None
        if self.live:
            click.echo("", err=True)
        return result


def follow_job(job_id: str, *, timeout: float, as_json: bool) -> int:
    """Show the job's progress until it is final, then its clip (or error); the exit code."""
    from tasks import wait

    progress = Progress(quiet=as_json)

    def show(job: Any) -> None:
        line = f"[{progress.elapsed:6.1f}s] {job.state.value:<16} polls={job.poll_count}"
        progress.show(line, moved=(job.state.value, job.poll_count))

    job = progress.follow(lambda: wait(job_id, timeout=timeout, on_change=show))
    if job is None:
        return EXIT_FAILED
    _warn_about_on_done(job)
    if as_json:
        click.echo(json.dumps(job.summary()))
    elif job.state.value == "done":
        click.echo(job.output_path or job.output_uri)
    else:
        click.echo(
            f"job {job_id} {job.state.value}: {job.error_code}: {job.error_message}", err=True
        )
    return EXIT_OK if job.state.value == "done" else EXIT_FAILED


def follow_batch(batch_id: str, *, timeout: float, as_json: bool) -> int:
    """Show the batch's progress until every line is final; the exit code."""
    from tasks.batches import get_batch, wait_batch
    from worker.batch import progress_line

    progress = Progress(quiet=as_json)
    first = get_batch(batch_id)

    def show(status: BatchStatus) -> None:
        line = progress_line(status, elapsed=progress.elapsed, done_before=first.done)
        progress.show(line, moved=status.counts)

    status = progress.follow(lambda: wait_batch(batch_id, timeout=timeout, on_progress=show))
    if status is None:
        return EXIT_FAILED
    if as_json:
        click.echo(json.dumps(status.to_dict()))
    # Lines refused up front (--skip-invalid) were never meant to render.
    return EXIT_OK if status.done == status.lines - len(status.invalid) else EXIT_FAILED


def _warn_about_on_done(job: Any, *, within: float = 3.0) -> None:
    """Say on stderr when the job's on_done task could not be told (a misspelt name)."""
    from tasks import get_job

    deadline = time.monotonic() + within  # the notice follows the final state at once
    while job.on_done and job.on_done_status is None and time.monotonic() < deadline:
        time.sleep(0.1)
        job = get_job(job.id)
    if job.on_done_status in ("unregistered", "retrying"):
        click.echo(
            f"warning: on_done {job.on_done}: {job.on_done_status}: {job.on_done_error or ''}",
            err=True,
        )
