"""The one reading of a ``Retry-After`` header, for the API client and the clip download.

Both read a 429 (and the API client a poll's hint) the same way, so a provider's pause
means the same whichever request met it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["parse_retry_after"]


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP-date), else None."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        # nan/inf/negative are garbage, not instructions.
        return seconds if 0 <= seconds < float("inf") else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # RFC 9110: HTTP-dates are GMT
    delta = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, delta)
