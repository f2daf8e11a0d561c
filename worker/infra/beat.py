"""Beat's scheduler: celery-redbeat's, made to wait out a Redis restart or failover.

redbeat's own scheduler lets a connection error escape ``tick`` (or its start-up), and
beat exits: a restart of Redis, or a Sentinel election (``MasterNotFoundError``), stops
every user schedule until someone starts beat again. This one:

- retries with back-off while Redis is unreachable, logging one line when the outage
  starts and one when it ends (:class:`~worker.infra.outage.OutageLog`);
- defers its start-up (static entries, the lock) until Redis answers;
- takes the lock again when it was lost (expired during a long outage, or dropped by a
  failover) and sends nothing until it holds it, so two beats never both fire.

Beat holds only the users' schedules (``relaydance schedule``); the sweep that keeps jobs
moving runs in every worker (:mod:`worker.job.sweep_loop`), so no job waits on beat.
"""

from __future__ import annotations

import logging
from typing import Any

from redbeat.schedulers import LUA_EXTEND_TO_SCRIPT, RedBeatScheduler, get_redis
from redis.exceptions import LockError

from worker.infra.outage import OutageLog, is_redis_outage

__all__ = ["Scheduler"]

logger = logging.getLogger(__name__)

RETRY_FIRST, RETRY_MAX = 0.5, 5.0  # seconds between tries while Redis is unreachable


class Scheduler(RedBeatScheduler):  # type: ignore[misc]
    """redbeat's scheduler, which survives Redis restarts and failovers."""

    def __init__(self, app: Any, *args: Any, **kwargs: Any) -> None:
        self._outage = OutageLog(logger, "beat")
        self._tries: int = 0
        self._setup_pending: bool = False
        self.lock: Any = None  # redbeat's lock, taken at beat_init or by _take_lock
        super().__init__(app, *args, **kwargs)

    def setup_schedule(self) -> None:
        """Install the static entries now, or at the first tick that reaches Redis."""
        try:
            super().setup_schedule()
        except Exception as exc:
            if not is_redis_outage(exc):
                raise
            self._setup_pending = True
            self._outage.failed(exc, meanwhile="beat starts once it answers")
        else:
            self._setup_pending = False

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """One pass over the due entries; while Redis is unreachable, a back-off delay."""
        try:
            if self._setup_pending:
                super().setup_schedule()
                self._setup_pending = False
            if self.lock_key and self.lock is None and not self._take_lock():
                return float(self.max_interval)  # another beat holds the lock: stand by
            interval = float(super().tick(*args, **kwargs))
        except LockError:
            logger.warning(
                "beat: the schedule lock %s was lost (it expired while Redis was away, or a "
                "failover dropped it); taking it again before sending anything", self.lock_key,
            )  # fmt: skip
            self.lock = None
            return min(float(self.max_interval), 1.0)
        except Exception as exc:
            if not is_redis_outage(exc):
                raise
            delay: float = min(RETRY_FIRST * 2**self._tries, RETRY_MAX)
            self._tries += 1
            self._outage.failed(exc, meanwhile=f"beat sends nothing and tries again (back-off "
                                                f"up to {RETRY_MAX:.0f} s)")  # fmt: skip
            return delay
        self._tries = 0
        self._outage.recovered()
        return interval

    def _take_lock(self) -> bool:
        """Take redbeat's lock if it is free (without blocking); whether this beat holds it."""
        client = get_redis(self.app)
        lock = client.lock(self.lock_key, timeout=self.lock_timeout, sleep=self.max_interval)
        lock.lua_extend = client.register_script(LUA_EXTEND_TO_SCRIPT)  # redbeat's extend
        if not lock.acquire(blocking=False):
            return False
        logger.info("beat: holds the schedule lock %s", self.lock_key)
        self.lock = lock
        return True

    def close(self) -> None:
        """Give the lock back if Redis answers; a lock left behind lapses by itself."""
        try:
            super().close()
        except Exception as exc:
            if not is_redis_outage(exc):
                raise
            self.lock = None
