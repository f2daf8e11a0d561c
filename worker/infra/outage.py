"""Telling a Redis outage from other errors, and saying so once per outage, not per try.

A Redis restart, a failover election (no master known yet), a replica that was primary a
moment ago (``READONLY``), a primary refusing writes for want of replicas (``NOREPLICAS``),
or the broker's publish failing for the same reason: each is a pause that every
long-running process waits out, logging one line when it starts and one when it ends
(:class:`OutageLog`), never one per tick and never by exiting.
"""

from __future__ import annotations

import logging
import time

import redis

__all__ = ["OutageLog", "is_redis_outage"]

# MasterNotFoundError (a failover's election) and BusyLoadingError (a restart reading its
# append-only file) are ConnectionErrors in redis-py.
_REDIS_DOWN: tuple[type[BaseException], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.ReadOnlyError,
    redis.exceptions.MasterDownError,  # a replica that lost its primary refuses reads
)


# A primary with ``min-replicas-to-write`` refuses writes while too few replicas keep up.
_REFUSED_FOR_NOW = "NOREPLICAS"


def is_redis_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says Redis (or the broker on it) cannot be reached right now."""
    if isinstance(exc, _REDIS_DOWN):
        return True
    if isinstance(exc, redis.ResponseError) and str(exc).startswith(_REFUSED_FOR_NOW):
        return True
    from kombu.exceptions import OperationalError  # the broker's own wrapper of the same

    return isinstance(exc, OperationalError)


class OutageLog:
    """Logs the start of an outage once (with what is done meanwhile) and its end once."""

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self._logger = logger
        self._what = what
        self.down_since: float | None = None

    def failed(self, exc: BaseException, *, meanwhile: str) -> bool:
        """Note a failed try; logs only the first of an outage. Returns whether it logged."""
        if self.down_since is not None:
            return False
        self.down_since = time.monotonic()
        self._logger.warning(
            "%s: Redis is unreachable (%s: %s); %s",
            self._what, type(exc).__name__, str(exc)[:200], meanwhile,
        )  # fmt: skip
        return True

    def recovered(self) -> bool:
        """Note a try that worked; logs the end of an outage, if there was one."""
        if self.down_since is None:
            return False
        lasted = time.monotonic() - self.down_since
        self.down_since = None
        self._logger.info("%s: Redis answers again after %.1f s", self._what, lasted)
        return True
