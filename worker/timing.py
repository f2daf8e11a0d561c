"""When to poll: learned generation times per model and length, and the poll schedule.

The first poll should land near the moment the clip is ready: the expected duration for
the model and length, learned from finished jobs (an exponentially weighted mean kept in
Redis and shared by every worker), or the catalogue's prior until a job has finished.
After that, polls come at shorter intervals that grow to a cap, and a server hint
(``Retry-After``) is honoured.
"""

from __future__ import annotations

import redis

from worker.providers import find_model

__all__ = ["Timing", "next_poll_delay"]

_EWMA_WEIGHT = 0.2  # how much one finished job moves the learned duration


class Timing:
    """Learned generation durations, per (model, seconds), in one Redis hash."""

    def __init__(self, client: redis.Redis, *, key: str = "rd:timing", scale: float = 1.0) -> None:
        self._redis = client
        self._key = key
        self._scale = scale  # a simulation's faster clock (RELAYDANCE_TIME_SCALE)
        self._ewma = client.register_script(
            """
            local old = redis.call('HGET', KEYS[1], ARGV[1])
            local new = tonumber(ARGV[2])
            if old then new = tonumber(old) * (1 - ARGV[3]) + new * ARGV[3] end
            redis.call('HSET', KEYS[1], ARGV[1], tostring(new))
            return tostring(new)
            """
        )

    def expected(self, model: str, seconds: int) -> float:
        """Expected generation time in seconds: learned, else the catalogue's prior."""
        raw = self._redis.hget(self._key, f"{model}:{seconds}")
        if raw is not None:
            return float(raw)
        entry = find_model(model)
        return (entry.expected_seconds if entry else 90.0) * self._scale

    def record(self, model: str, seconds: int, duration: float) -> float:
        """Fold one finished job's generation time into the learned value."""
        result = self._ewma(keys=[self._key], args=[f"{model}:{seconds}", duration, _EWMA_WEIGHT])
        return float(result.decode() if isinstance(result, bytes) else result)


def next_poll_delay(
    *,
    polls_done: int,
    elapsed: float,
    expected: float,
    minimum: float,
    maximum: float,
    hint: float | None = None,
) -> float:
    """Seconds until the next poll of a task submitted ``elapsed`` seconds ago.

    Before the first poll: wait until the expected duration has passed. Afterwards,
    poll every ``expected / 8`` growing by half each time, within [minimum, maximum].
    A server hint is a floor.
    """
    if polls_done == 0:
        delay = max(expected - elapsed, minimum)
    else:
        delay = expected / 8 * 1.5 ** (polls_done - 1)
    delay = min(max(delay, minimum), maximum) if polls_done else min(delay, max(maximum, expected))
    if hint is not None:
        delay = max(delay, hint)
    return delay
