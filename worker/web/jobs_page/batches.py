"""Batches as the page shows them: progress by state, money against budget, rate and ETA.

Batches are listed from their creation-time index (``rd:batches:created``), a page at a
time; each batch's status is :meth:`worker.batch.BatchTracker.status`, the same figures
``relaydance batch status`` prints (reading it also settles jobs that ended, as the CLI's
reading does). Throughput is the average since the batch was created, and the ETA the
lines left at that rate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from worker.batch import BatchStatus
from worker.batch.status import is_final_line_state
from worker.batch.store import BatchNotFound
from worker.batch.tracker import BatchTracker
from worker.job.engine import Engine

__all__ = ["BATCH_PAGE", "BatchView", "batch_view", "list_batches"]

BATCH_PAGE = 10


@dataclass(frozen=True)
class Segment:
    """One part of a progress bar."""

    group: str  # the group's key
    label: str
    count: int
    x: float  # where it starts, in percent
    width: float  # its share, in percent


@dataclass(frozen=True)
class BatchView:
    """A batch's status and what the page derives from it."""

    status: BatchStatus
    settled: int
    segments: list[Segment]
    per_second: float | None
    eta_seconds: float | None

    @property
    def percent(self) -> int:
        """Lines that reached an end, in whole percent (100 only when all did)."""
        total = max(self.status.lines, 1)
        return 100 if self.settled >= self.status.lines else int(100 * self.settled / total)


def batch_view(status: BatchStatus, *, now: float | None = None) -> BatchView:
    """Progress segments, throughput since creation and the ETA of ``status``.

    The segments are the line groups ``relaydance batch status`` prints, in order.
    """
    total = max(status.lines, 1)
    segments: list[Segment] = []
    x = 0.0
    for group, count in status.grouped():
        if count:
            width = 100.0 * count / total
            segments.append(Segment(group.key, group.label, count, round(x, 3), round(width, 3)))
            x += width
    settled = sum(1 for s in status.line_states.values() if is_final_line_state(s))
    elapsed = (time.time() if now is None else now) - status.created_at
    rate = settled / elapsed if elapsed > 0 and settled else None
    left = status.lines - settled
    eta = (left / rate if rate else None) if left else 0.0
    return BatchView(status, settled, segments, rate, eta)


def list_batches(engine: Engine, *, after: str = "") -> tuple[list[BatchView], str]:
    """A page of batches, newest first, and the id the next page starts after ('' at the end)."""
    tracker = BatchTracker(engine)
    index = tracker.store.created_key
    start = 0
    if after:
        rank = engine.redis.zrevrank(index, after)
        if rank is None:
            return [], ""
        start = int(str(rank)) + 1
    ids = [str(m) for m in engine.redis.zrevrange(index, start, start + BATCH_PAGE - 1)]
    views: list[BatchView] = []
    for batch_id in ids:
        try:
            views.append(batch_view(tracker.status(batch_id)))
        except BatchNotFound:
            engine.redis.zrem(index, batch_id)  # expired: drop it from the index
    return views, (ids[-1] if len(ids) == BATCH_PAGE else "")


def one_batch(engine: Engine, batch_id: str) -> BatchView:
    """One batch by id or name; raises :class:`BatchNotFound`."""
    return batch_view(BatchTracker(engine).status(batch_id))
