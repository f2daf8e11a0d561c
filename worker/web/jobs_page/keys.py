"""Each key alias as the page shows it: limits, use, request rate, 429s by minute, timings.

The figures are ``relaydance limits``'s (:meth:`worker.job.engine.Engine.limit_snapshots`).
The 429 chart reads the ring of per-minute counters the adaptive limit already keeps
(:mod:`worker.limits.adaptive`: 60 buckets of one minute), on the Redis server's clock,
as the scripts that write it do. Learned generation times are ``relaydance timing``'s.
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.job.engine import Engine
from worker.job.timing import first_poll_delay_for
from worker.limits._common import LimitKeys
from worker.limits.adaptive import REJECTION_BUCKET_US, REJECTION_BUCKETS
from worker.limits.key_limits import LimitSnapshot

__all__ = ["KeyRow", "TimingRow", "chart_bars", "key_rows", "timing_rows"]

LIMITS_PREFIX = "rd:limits"  # KeyLimits' default, the engine's
CHART_HEIGHT = 32


@dataclass(frozen=True)
class KeyRow:
    """One alias: its provider, limits, use and recent 429s (oldest minute first)."""

    alias: str
    provider: str
    limits: LimitSnapshot  # what ``relaydance limits`` shows
    per_minute: list[int]


@dataclass(frozen=True)
class TimingRow:
    """What the fleet learned of one model and clip length."""

    model: str
    seconds: int
    expected: float
    deviation: float | None
    observations: int
    prior: float
    first_poll: float


def _per_minute(ring: dict[str, str], now_us: int) -> list[int]:
    """The last hour's 429s per minute, oldest first, from a ring hash (``e<i>``/``n<i>``)."""
    epoch = now_us // REJECTION_BUCKET_US
    counts: dict[int, int] = {}
    for i in range(REJECTION_BUCKETS):
        stamp, count = ring.get(f"e{i}"), ring.get(f"n{i}")
        if stamp is not None and count is not None:
            counts[int(float(stamp))] = int(count)
    return [counts.get(e, 0) for e in range(epoch - REJECTION_BUCKETS + 1, epoch + 1)]


def key_rows(engine: Engine) -> list[KeyRow]:
    """Every configured or seen alias, sorted."""
    snapshots = engine.limit_snapshots()
    pipe = engine.redis.pipeline(transaction=False)
    pipe.time()
    for alias in snapshots:
        pipe.hgetall(LimitKeys(LIMITS_PREFIX, alias).rejections)
    replies = pipe.execute()
    seconds, micros = replies[0]
    rings: list[dict[str, str]] = replies[1:]
    now_us = int(seconds) * 1_000_000 + int(micros)
    rows: list[KeyRow] = []
    for (alias, snap), ring in zip(snapshots.items(), rings, strict=True):
        rows.append(KeyRow(
            alias=alias,
            provider=engine.settings.provider_for(alias),
            limits=snap,
            per_minute=_per_minute({str(k): str(v) for k, v in ring.items()}, now_us),
        ))  # fmt: skip
    return rows


def chart_bars(per_minute: list[int]) -> list[tuple[int, int, int]]:
    """(x, height, count) of each minute's bar in a chart :data:`CHART_HEIGHT` high."""
    top = max(max(per_minute, default=0), 1)
    return [(i * 3, max(round(CHART_HEIGHT * n / top), 1 if n else 0), n)
            for i, n in enumerate(per_minute)]  # fmt: skip


def timing_rows(engine: Engine) -> list[TimingRow]:
    """Learned generation time per model and length, and when the first poll goes."""
    minimum = engine.settings.poll_interval_min
    return [
        TimingRow(model, seconds, estimate.seconds, estimate.deviation, estimate.observations,
                  estimate.prior, first_poll_delay_for(estimate, minimum=minimum))
        for model, seconds, estimate in engine.timing.all()
    ]  # fmt: skip
