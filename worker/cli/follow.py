"""Following a job (``render --wait``, ``demo``) or a batch (``batch --wait``) until it is
final, with one progress display for both.

On a terminal the progress line is rewritten in place. Off one (a log file, CI) a line is
printed when what it counts moves, and otherwise at most every ``QUIET_EVERY`` seconds, so
a long wait leaves a short, readable log. ``--json`` prints no progress.

A Redis outage does not end the wait: it is said once ("Redis at ... is unreachable;
still waiting"), the wait goes on, and its end is said too. Only when the timeout passes
with Redis still away does the command give up, with exit 3 (cannot tell), as it does
when the timeout passes with the job still running. A job still ``queued`` after
``UNTAKEN_AFTER`` seconds is said to be untaken, naming the Redis no worker may be on.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import click

from worker.cli.errors import EXIT_FAILED, EXIT_OK, EXIT_UNKNOWN, redis_url_shown, unreachable_text
from worker.infra.outage import is_redis_outage

if TYPE_CHECKING:
    from worker.batch import BatchStatus

__all__ = ["QUIET_EVERY", "UNTAKEN_AFTER", "Progress", "RideOut", "follow_batch", "follow_job"]

QUIET_EVERY = 10.0  # without a terminal, print progress at most this often unless it moved
UNTAKEN_AFTER = 30.0  # a job still queued this long: say that no worker may be listening
RETRY_EVERY = 2.0  # while Redis is unreachable, look again this often

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

    def note(self, text: str) -> None:
        """Say something on its own line, even with ``--json`` (it goes to stderr)."""
        click.echo(("\n" if self.live and self._text else "") + text, err=True)
        self._text = ""

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


class RideOut(Generic[T]):
    """Call ``wait(seconds left)``, again after each Redis outage, until ``timeout`` passes.

    The outage is said once and its end once (:meth:`back`, from the progress callback);
    an outage that outlasts the timeout is raised (the command exits 3).
    """

    def __init__(
        self, wait: Callable[[float], T], *, timeout: float, progress: Progress, what: str
    ) -> None:
        self._wait, self._timeout, self._progress, self._what = wait, timeout, progress, what
        self._down_since: float | None = None

    def __call__(self) -> T:
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                return self._wait(max(deadline - time.monotonic(), 0.0))
            except Exception as exc:
                left = deadline - time.monotonic()
                if not is_redis_outage(exc) or left <= 0:
                    raise
                if self._down_since is None:
                    self._down_since = time.monotonic()
                    self._progress.note(
                        f"{unreachable_text(exc)}; still waiting for {self._what}, trying "
                        f"again every {RETRY_EVERY:.0f} s ({left:.0f} s left)"
                    )
                time.sleep(min(RETRY_EVERY, left))

    def back(self) -> None:
        """Say that Redis answers again, if it was away."""
        if self._down_since is not None:
            lasted = time.monotonic() - self._down_since
            self._down_since = None
            self._progress.note(f"Redis answers again after {lasted:.0f} s; following {self._what}")


def follow_job(
    job_id: str, *, timeout: float, as_json: bool, untaken_after: float = UNTAKEN_AFTER
) -> int:
    """Show the job's progress until it is final, then its clip (or error); the exit code."""
    from worker.api import get_job
    from worker.infra.waiting import wait_until_final

    progress = Progress(quiet=as_json)
    untaken = [untaken_after]

    def show(job: Any) -> None:
        waiting.back()
        if job.state.value == "queued" and progress.elapsed >= untaken[0] > 0:
            untaken[0] = 0
            progress.note(f"no worker has taken this job in {untaken_after:.0f} s: is a "
                          f"worker running against {redis_url_shown()}?")  # fmt: skip
        line = f"[{progress.elapsed:6.1f}s] {job.state.value:<16} polls={job.poll_count}"
        progress.show(line, moved=(job.state.value, job.poll_count))

    def wait(left: float) -> Any:
        return wait_until_final(
            lambda: get_job(job_id), lambda job: job.is_final, timeout=left, interval=0.25,
            on_progress=show, timeout_message=lambda job: f"job {job_id} still {job.state.value} "
            f"after {timeout:.0f} s; it may still finish: `relaydance status {job_id}`",
        )  # fmt: skip

    waiting = RideOut(wait, timeout=timeout, progress=progress, what=f"job {job_id}")
    job = progress.follow(waiting)
    if job is None:
        return EXIT_UNKNOWN  # not failed: nobody can tell yet
    _warn_about_on_done(job)
    if as_json:
        click.echo(json.dumps(job.summary()))
    elif job.state.value == "done":  # each still of an image job on a line of its own
        stills = [str(out.get("path") or out.get("uri")) for out in job.outputs]
        click.echo("\n".join(stills) if stills else job.output_path or job.output_uri)
    else:
        click.echo(
            f"job {job_id} {job.state.value}: {job.error_code}: {job.error_message}", err=True
        )
    return EXIT_OK if job.state.value == "done" else EXIT_FAILED


def follow_batch(batch_id: str, *, timeout: float, as_json: bool) -> int:
    """Show the batch's progress until every line is final; the exit code."""
    from worker.api import get_batch, wait_batch
    from worker.batch import progress_line

    progress = Progress(quiet=as_json)
    first = get_batch(batch_id)

    def show(status: BatchStatus) -> None:
        waiting.back()
        line = progress_line(status, elapsed=progress.elapsed, done_before=first.done)
        progress.show(line, moved=status.counts)

    waiting = RideOut(
        lambda left: wait_batch(batch_id, timeout=left, on_progress=show),
        timeout=timeout, progress=progress, what=f"batch {batch_id}",
    )  # fmt: skip
    status = progress.follow(waiting)
    if status is None:
        return EXIT_UNKNOWN  # lines still running: nobody can tell yet
    if as_json:
        click.echo(json.dumps(status.to_dict()))
    # Lines refused up front (--skip-invalid) were never meant to render.
    return EXIT_OK if status.done == status.lines - len(status.invalid) else EXIT_FAILED


def _warn_about_on_done(job: Any, *, within: float = 3.0) -> None:
    """Say on stderr when the job's on_done task could not be told (a misspelt name)."""
    from worker.api import get_job

    deadline = time.monotonic() + within  # the notice follows the final state at once
    while job.on_done and job.on_done_status is None and time.monotonic() < deadline:
        time.sleep(0.1)
        job = get_job(job.id)
    if job.on_done_status in ("unregistered", "retrying"):
        click.echo(
            f"warning: on_done {job.on_done}: {job.on_done_status}: {job.on_done_error or ''}",
            err=True,
        )
