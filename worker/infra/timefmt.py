"""Times for people and for programs: "in 4 m 10 s", "12:03:10 UTC", ISO 8601.

Job records keep epoch seconds (floats). Humans read spans and clock times; JSON readers
get both the epoch and its ISO 8601 form, so neither has to guess a time zone.
"""

from __future__ import annotations

import datetime as dt
import re

__all__ = ["at", "iso", "parse_since", "relative", "span"]

_AGO = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


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


def parse_since(text: str, *, now: float) -> float:
    """Epoch seconds from ``30m``, ``2h``, ``7d`` (that long before ``now``) or an ISO 8601
    date or time (UTC unless it names a zone); raises ValueError saying what it takes."""
    value = text.strip().lower()
    found = _AGO.match(value)
    if found:
        return now - float(found.group(1)) * _UNIT[found.group(2)]
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a span nor a time; give e.g. 30m, 2h, 7d, 2025-01-02 or "
            "2025-01-02T12:00"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()
