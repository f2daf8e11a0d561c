"""The fleet's running totals in Redis: jobs generated, polls, spend.

The steps write them (:func:`record_generated`); ``/metrics`` (:mod:`worker.web.metrics`)
reads them.
"""

from __future__ import annotations

from worker.job.engine import Engine

__all__ = ["METRICS_KEY", "record_generated"]

METRICS_KEY = "rd:metrics"


def record_generated(engine: Engine, *, polls: int, cost: float | None) -> None:
    """Count one generated job: its polls and its cost (the provider's, else the estimate)."""
    pipe = engine.redis.pipeline(transaction=False)
    pipe.hincrby(METRICS_KEY, "generated", 1)
    pipe.hincrby(METRICS_KEY, "polls", polls)
    if cost:
        pipe.hincrbyfloat(METRICS_KEY, "spend_usd", cost)
    pipe.execute()
