"""Times for people and for programs: "in 4 m 10 s", "12:03:10 UTC", ISO 8601.

Job records keep epoch seconds (floats). Humans read spans and clock times; JSON readers
get both the epoch and its ISO 8601 form, so neither has to guess a time zone.
"""

from __future__ import annotations

import datetime as dt

__all__ = ["at", "iso", "relative", "span"]


def iso(epoch: float | None) -> str | None:
    """The epoch as ISO 8601 in UTC with milliseconds, or None."""
    if epoch is None:
        return None
    moment = dt.datetime.fromtimestamp(epoch, tz=dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def span(seconds: float) -> str:
    """A duration as people say it: ``0 s``, ``42 s``, ``4 m 10 s``, ``2 h 5 m``, ``3 d 4 h``."""
    total = max(round(abs(seconds)), 0)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} m" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} m {secs} s" if secs else f"{minutes} m"
    return f"{secs} s"


def relative(epoch: float, *, now: float) -> str:
    """``in 4 m 10 s`` for a time ahead of ``now``, ``3 s ago`` for one behind it."""
    delta = epoch - now
    if abs(delta) < 0.5:
        return "now"
    return f"in {span(delta)}" if delta > 0 else f"{span(delta)} ago"


def at(epoch: float | None, *, now: float) -> str:
    """A clock time in UTC with its distance from ``now``: ``12:03:10 UTC (in 4 m 10 s)``.

    The date is added when the time is not within a day of ``now``.
    """
    if epoch is None:
        return "unknown"
    moment = dt.datetime.fromtimestamp(epoch, tz=dt.UTC)
    shape = "%H:%M:%S UTC" if abs(epoch - now) < 86400 else "%Y-%m-%d %H:%M:%S UTC"
    return f"{moment.strftime(shape)} ({relative(epoch, now=now)})"
