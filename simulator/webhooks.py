"""Webhook delivery: one background loop over a heap of due deliveries, one shared client.

Each task's webhook is in its own dialect: RelayDance posts the task JSON, Kinovi an
envelope ``{"code", "message", "data"}`` (see :meth:`Simulator.webhook_body`).

A task with ``metadata.callback_url`` gets one heap entry at submit time, due when the
task turns final; nothing runs for it until then, so 10,000 waiting tasks cost 10,000
small tuples. When an entry comes due the loop applies the fault knobs (drop, duplicate,
reorder) and POSTs the final task JSON, retrying failures with exponential backoff.
Callback urls may carry a token, so they are never logged. Unless ``webhook_allow_remote``
is set, only loopback callback urls are called: a simulator run for tests must not send
traffic to hosts a request body names.
"""

from __future__ import annotations

import asyncio
import heapq
import ipaddress
import itertools
import logging
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from simulator.config import SimConfig
from simulator.store import Task, TaskStore

__all__ = ["WebhookDispatcher", "WebhookSource"]

logger = logging.getLogger(__name__)

# (due, sequence, task id, base url, kind, attempt, copy); kind is "due", "final" or "stale".
_Entry = tuple[float, int, str, str, str, int, int]


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class WebhookSource(Protocol):
    """What the dispatcher reads of its simulator (:class:`~simulator.core.Simulator`).

    Declared here so that the simulator depends on its dispatcher and not the reverse.
    """

    config: SimConfig
    clock: Callable[[], float]
    store: TaskStore

    def chance(self, rate: float) -> bool:
        """Whether a fault with this rate happens now."""

    def webhook_body(self, task: Task, base_url: str, *, status: str) -> dict[str, Any]:
        """What a webhook of ``task`` carries."""


class WebhookDispatcher:
    """Delivers the webhooks of one :class:`~simulator.core.Simulator`."""

    def __init__(self, sim: WebhookSource, *, max_concurrent: int = 64) -> None:
        self._sim = sim
        self._max_concurrent = max_concurrent
        self._heap: list[_Entry] = []
        self._seq = itertools.count()
        self._wake: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        self._runner: asyncio.Task[None] | None = None
        self._active: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None

    @property
    def pending(self) -> int:
        """Deliveries waiting in the heap."""
        return len(self._heap)

    def schedule(self, task: Task, *, base_url: str) -> None:
        """Plan the webhook of ``task`` for when it turns final."""
        self._push((task.ready_at, next(self._seq), task.task_id, base_url, "due", 1, 0))
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop yet; start() runs the heap when the app starts
        self.start()

    def clear(self) -> None:
        """Drop every delivery not yet started."""
        self._heap.clear()

    def start(self) -> None:
        """Run the delivery loop on the current event loop, unless it already runs."""
        if self._runner is not None and not self._runner.done():
            return
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(self._max_concurrent)
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            limits=httpx.Limits(max_connections=self._max_concurrent),
            headers={"User-Agent": "relaydance-simulator"},
        )
        self._runner = asyncio.get_running_loop().create_task(self._run())

    async def aclose(self) -> None:
        """Stop the loop, cancel deliveries in progress and close the client."""
        tasks = [t for t in (self._runner, *self._active) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._runner = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _push(self, entry: _Entry) -> None:
        heapq.heappush(self._heap, entry)
        if self._wake is not None:
            self._wake.set()

    async def _run(self) -> None:
        assert self._wake is not None
        assert self._slots is not None
        while True:
            while self._heap and self._heap[0][0] <= self._sim.clock():
                entry = heapq.heappop(self._heap)
                await self._slots.acquire()
                job = asyncio.create_task(self._handle(entry))
                self._active.add(job)
                job.add_done_callback(self._finished)
            timeout = max(0.0, self._heap[0][0] - self._sim.clock()) if self._heap else None
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    def _finished(self, job: asyncio.Task[None]) -> None:
        self._active.discard(job)
        if self._slots is not None:
            self._slots.release()

    async def _handle(self, entry: _Entry) -> None:
        _, _, task_id, base_url, kind, attempt, copy = entry
        sim, counters = self._sim, self._sim.store.counters
        task = sim.store.tasks.get(task_id)
        if task is None or task.callback_url is None:
            return  # forgotten by a reset
        cfg, now = sim.config, sim.clock()
        if kind == "due":
            if not cfg.webhooks:
                counters["webhooks_suppressed"] += 1
            elif not (cfg.webhook_allow_remote or _is_loopback(task.callback_url)):
                counters["webhooks_blocked"] += 1
            elif sim.chance(cfg.webhook_drop_rate):
                counters["webhooks_dropped"] += 1
            else:
                for n in range(cfg.webhook_duplicates):
                    self._push((now, next(self._seq), task_id, base_url, "final", 1, n))
            return
        status = "running" if kind == "stale" else ("failed" if task.failed else "succeeded")
        payload = sim.webhook_body(task, base_url, status=status)
        if await self._post(task.callback_url, payload, task_id, wait=cfg.webhook_timeout):
            counters["webhooks_sent"] += 1
            if kind == "final" and copy == 0 and cfg.webhook_reorder:
                self._push((sim.clock(), next(self._seq), task_id, base_url, "stale", 1, 0))
            return
        counters["webhooks_failed"] += 1
        if attempt >= cfg.webhook_max_attempts:
            counters["webhooks_abandoned"] += 1
            logger.info("webhook for %s abandoned after %d attempts", task_id, attempt)
            return
        delay = cfg.webhook_retry_base * cfg.time_scale * 2 ** (attempt - 1)
        self._push(
            (sim.clock() + delay, next(self._seq), task_id, base_url, kind, attempt + 1, copy)
        )

    async def _post(self, url: str, payload: dict[str, Any], task_id: str, *, wait: float) -> bool:
        assert self._client is not None
        try:
            response = await self._client.post(url, json=payload, timeout=wait)
        except httpx.HTTPError as exc:
            logger.debug("webhook for %s failed: %s", task_id, type(exc).__name__)
            return False
        return response.is_success
