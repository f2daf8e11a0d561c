"""The sweep runs in every worker, under a short Redis lock: one sweep fleet-wide per interval.

Job liveness must not hang on one process that a Redis restart can stop: a beat that
exits on a connection error used to take the sweeper with it. So every worker starts a
thread (:class:`SweepLoop`) when it is ready. Each tick (a quarter of the sweep interval,
jittered) it marks itself alive in ``rd:sweep:loops`` and tries to take ``rd:sweep:lock``
(``SET NX PX``). The holder sweeps, renewing the lock while it works, so a sweep killed
with its worker frees the lock within seconds; when it finishes it records the time in
``rd:sweep:last`` and leaves the lock to lapse at the end of the interval, so the next
sweep, by whichever worker takes the lock then, comes one interval later.

Redis errors are a pause: logged once when the outage starts and once when it ends, and
the loop goes on. Any other error of a sweep is logged with its traceback once until a
sweep works again. A sweep that has stopped while workers run is reported by
:func:`worker.job.sweep_health.report_if_stopped`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

import redis

from worker.infra.outage import OutageLog, is_redis_outage
from worker.job.engine import Engine
from worker.job.sweep_health import LOOPS_KEY, report_if_stopped, stopped_after
from worker.job.sweeper import LAST_SWEEP_KEY, SweepReport, sweep

__all__ = ["LOCK_KEY", "SweepLoop", "run_sweep"]

logger = logging.getLogger(__name__)

LOCK_KEY = "rd:sweep:lock"

# Compare-and-set on the lock's token: PEXPIRE when ARGV[2] > 0, else DEL.
_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(ARGV[2]) > 0 then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return redis.call('DEL', KEYS[1])
"""


def _lock_seconds(interval: float) -> float:
    # Short, so that a sweep killed with its worker frees the lock soon; renewed meanwhile.
    return max(2.0, min(interval, 10.0))


def run_sweep(engine: Engine, *, token: str | None = None) -> SweepReport | None:
    """Sweep once if this process takes the lock; None when another sweep holds it or ran
    less than an interval ago."""
    token = token or uuid.uuid4().hex
    interval = engine.settings.sweep_interval_seconds
    hold = _lock_seconds(interval)
    if not engine.redis.set(LOCK_KEY, token, nx=True, px=int(hold * 1000)):
        return None
    started = time.time()
    renew = engine.redis.register_script(_RENEW)
    try:
        with _renewed(lambda: renew(keys=[LOCK_KEY], args=[token, int(hold * 1000)]), hold / 3):
            report = sweep(engine)
        engine.redis.set(LAST_SWEEP_KEY, repr(started))
        _prune_loops(engine, now=started)
    finally:
        # The lock lapses one interval after this sweep began: that is the next one's turn.
        rest = interval - (time.time() - started)
        try:
            renew(keys=[LOCK_KEY], args=[token, max(int(rest * 1000), 0)])
        except redis.RedisError:
            pass  # it lapses by itself within ``hold`` seconds
    return report


@contextmanager
def _renewed(renew: Callable[[], object], every: float) -> Iterator[None]:
    """Call ``renew`` every ``every`` seconds in a thread while the block runs."""
    done = threading.Event()

    def loop() -> None:
        while not done.wait(every):
            try:
                renew()
            except redis.RedisError:
                return  # the sweep itself meets the same error and ends

    thread = threading.Thread(target=loop, name="sweep-lock", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=every + 1)


def _prune_loops(engine: Engine, *, now: float) -> None:
    # Workers long gone leave their mark behind: drop marks far older than any reader's window.
    engine.redis.zremrangebyscore(LOOPS_KEY, "-inf", now - 10 * stopped_after(engine.settings))


class SweepLoop:
    """A worker's thread that takes its turn at the fleet's sweep."""

    def __init__(self, engine: Callable[[], Engine], *, node: str) -> None:
        self._engine = engine
        self._node = node
        self._token = f"{node}:{uuid.uuid4().hex[:8]}"
        self._started = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._outage = OutageLog(logger, "sweep")
        self._failing = False

    def start(self) -> SweepLoop:
        """Start the thread (a daemon: a worker's exit never waits on it)."""
        self._thread = threading.Thread(target=self._run, name="sweep-loop", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to end, and wait for it a little."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            interval = self.tick()
            self._stop.wait(interval * random.uniform(0.8, 1.2))  # noqa: S311 - jitter only

    def tick(self) -> float:
        """Mark this worker alive, sweep if it is this worker's turn; the next tick's delay."""
        engine = self._engine()
        every = min(max(engine.settings.sweep_interval_seconds / 4, 0.05), 5.0)
        try:
            now = time.time()
            engine.redis.zadd(LOOPS_KEY, {f"{self._node}|{self._started!r}": now})
            report = run_sweep(engine, token=self._token)
            if report is None:
                report_if_stopped(engine)
        except Exception as exc:
            if is_redis_outage(exc):
                self._outage.failed(exc, meanwhile="this worker tries again each tick")
                return every
            if not self._failing:
                self._failing = True
                logger.exception("sweep failed; the next turn tries again")
            with suppress(Exception):  # a sweep failing each time is a stopped sweep too
                report_if_stopped(engine)
            return every
        self._outage.recovered()
        if report is not None and self._failing:
            self._failing = False
            logger.info("sweep works again")
        return every
