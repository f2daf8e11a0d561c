"""Tasks and counters, held in memory. Status is computed from timestamps, never by a timer.

A task is a small ``__slots__`` record with the times it starts and finishes; reading it
at time ``now`` tells its status. Each API key has a heap of the finish times of its tasks
so the count of tasks not yet final is exact and cheap, which is what the concurrency cap
and the peak in-flight figure need. Keys are identified by the sha256 of the key; only
the first 8 hex digits appear in stats, and the key itself is never stored.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FINAL", "KeyStats", "Task", "TaskStore", "fingerprint"]

FINAL = ("succeeded", "failed")


def fingerprint(owner: str) -> str:
    """The short, non-reversible label of a key owner used in stats and debug views."""
    return owner[:8]


@dataclass(slots=True)
class Task:
    """One generation task; ``owner`` is the sha256 hex digest of the API key that made it."""

    task_id: str
    owner: str
    model: str
    seconds: int
    ratio: str
    resolution: str
    generate_audio: bool
    callback_url: str | None
    idempotency_key: str | None
    created_at: float
    start_at: float
    ready_at: float
    failed: bool
    dialect: str = "relaydance"
    credits: int = 0
    input_urls: tuple[str, ...] = ()  # the media URLs its body cited, in order

    def status(self, now: float) -> str:
        """The status a poll at ``now`` sees."""
        if now >= self.ready_at:
            return "failed" if self.failed else "succeeded"
        return "running" if now >= self.start_at else "submitted"


@dataclass(slots=True)
class KeyStats:
    """What one API key did."""

    submissions: int = 0
    duplicates: int = 0
    rate_limited: int = 0
    peak_in_flight: int = 0


@dataclass
class TaskStore:
    """Every task, the in-flight heaps per key, idempotency records and counters."""

    tasks: dict[str, Task] = field(default_factory=dict)
    # (owner, Idempotency-Key) -> (task id, sha256 of the canonical body)
    idempotency: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    counters: Counter[str] = field(default_factory=Counter)
    keys: defaultdict[str, KeyStats] = field(default_factory=lambda: defaultdict(KeyStats))
    duplicates_by_key: Counter[str] = field(default_factory=Counter)
    _ready: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def in_flight(self, owner: str, now: float) -> int:
        """Tasks of ``owner`` not yet final at ``now``."""
        heap = self._ready.get(owner)
        if not heap:
            return 0
        while heap and heap[0] <= now:
            heapq.heappop(heap)
        return len(heap)

    def earliest_ready(self, owner: str) -> float | None:
        """When the next of ``owner``'s in-flight tasks becomes final, if any."""
        heap = self._ready.get(owner)
        return heap[0] if heap else None

    def occupy(self, owner: str, *, until: float, now: float) -> None:
        """Count one generation with no task (an image) as in flight for ``owner`` until then."""
        heapq.heappush(self._ready[owner], until)
        stats = self.keys[owner]
        stats.peak_in_flight = max(stats.peak_in_flight, self.in_flight(owner, now))

    def add(self, task: Task, *, now: float, body_hash: str) -> None:
        """Record a new task and what it does to its key's counters."""
        self.tasks[task.task_id] = task
        heapq.heappush(self._ready[task.owner], task.ready_at)
        stats = self.keys[task.owner]
        stats.submissions += 1
        stats.peak_in_flight = max(stats.peak_in_flight, self.in_flight(task.owner, now))
        self.counters["submissions"] += 1
        if task.idempotency_key is not None:
            # The first task of a key is the one a provider honouring keys would replay.
            self.idempotency.setdefault(
                (task.owner, task.idempotency_key), (task.task_id, body_hash)
            )

    def find_idempotent(self, owner: str, key: str) -> tuple[Task, str] | None:
        """The task an earlier submit with this Idempotency-Key made, and its body hash."""
        found = self.idempotency.get((owner, key))
        if found is None:
            return None
        task = self.tasks.get(found[0])
        return (task, found[1]) if task is not None else None

    def note_duplicate(self, task: Task) -> None:
        """Count a repeated submit that was answered with an existing task."""
        self.counters["duplicates"] += 1
        self.keys[task.owner].duplicates += 1
        if task.idempotency_key is not None:
            self.duplicates_by_key[task.idempotency_key] += 1

    def get(self, task_id: str, owner: str) -> Task | None:
        """The task if it exists and belongs to ``owner``."""
        task = self.tasks.get(task_id)
        return task if task is not None and task.owner == owner else None

    def clear(self) -> None:
        """Forget every task and zero every counter."""
        self.tasks.clear()
        self.idempotency.clear()
        self.counters.clear()
        self.keys.clear()
        self.duplicates_by_key.clear()
        self._ready.clear()

    def billing(self) -> dict[str, int]:
        """Billed tasks, and how many Idempotency-Keys (jobs) were billed more than once.

        A failed task is not billed. Two billed tasks under one key are one job paid twice,
        whatever the client meant: this is the figure the fleet must keep at zero.
        """
        billed: Counter[str] = Counter()
        total = 0
        for task in self.tasks.values():
            if task.failed:
                continue
            total += 1
            if task.idempotency_key is not None:
                billed[task.idempotency_key] += 1
        twice = {key: n for key, n in billed.items() if n > 1}
        return {
            "billed_tasks": total,
            "paid_twice": len(twice),
            "extra_billed_tasks": sum(n - 1 for n in twice.values()),
        }

    def snapshot(self, now: float) -> dict[str, Any]:
        """The stats document served at ``/_sim/stats``."""
        per_key: dict[str, dict[str, int]] = {}
        for owner, stats in self.keys.items():
            per_key[fingerprint(owner)] = {
                "submissions": stats.submissions,
                "duplicates": stats.duplicates,
                "rate_limited": stats.rate_limited,
                "peak_in_flight": stats.peak_in_flight,
                "in_flight": self.in_flight(owner, now),
            }
        c = self.counters
        return {
            "tasks": len(self.tasks),
            "submissions": c["submissions"],
            "submissions_by_key": {k: v["submissions"] for k, v in per_key.items()},
            "duplicates": c["duplicates"],
            "duplicates_by_idempotency_key": dict(self.duplicates_by_key),
            "peak_in_flight_by_key": {k: v["peak_in_flight"] for k, v in per_key.items()},
            "in_flight_by_key": {k: v["in_flight"] for k, v in per_key.items()},
            "keys": per_key,
            "rate_limited": c["rate_limited"],
            "polls": c["polls"],
            "uploads": c["uploads"],
            "images": c["images"],
            "downloads": c["downloads"],
            "downloads_refused": c["downloads_refused"],
            "redirects": c["redirects"],
            "bad_requests": c["bad_requests"],
            "unauthorized": c["unauthorized"],
            "not_found": c["not_found"],
            "forbidden": c["forbidden"],
            "errors_5xx": c["errors_5xx"],
            "lost_responses": c["lost_responses"],
            "dropped_replies": c["dropped_replies"],
            "outage_requests": c["outage_requests"],
            "refused_credits": c["refused_credits"],
            "refused_model": c["refused_model"],
            "accepted": c["accepted"],
            **self.billing(),
            "webhooks_sent": c["webhooks_sent"],
            "webhooks_failed": c["webhooks_failed"],
            "webhooks_abandoned": c["webhooks_abandoned"],
            "webhooks_dropped": c["webhooks_dropped"],
            "webhooks_suppressed": c["webhooks_suppressed"],
            "webhooks_blocked": c["webhooks_blocked"],
        }
