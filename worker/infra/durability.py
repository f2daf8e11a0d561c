"""A write that money depends on reaches a replica before anything acts on it: Redis ``WAIT``.

Redis replicates asynchronously: the primary acknowledges a write before any replica has
it, and a failover may promote a replica that never got it. A claim that let a worker
POST, lost that way, lets the job be submitted (and paid for) again. So such a write is
sent with ``WAIT numreplicas timeout`` right behind it, in the same round trip and on the
same connection (``WAIT`` covers the writes of the connection that sends it), and counts
as durable only when enough replicas confirmed it in time.

How many: ``RELAYDANCE_REDIS_MIN_REPLICAS``, or, unset, the replicas connected to the
primary when this process first needs the answer, at most one. A lone Redis (no replica)
waits for none and costs no round trip: there, failover safety is off.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import redis
from redis.commands.core import Script

from worker.errors import NotDurable

__all__ = ["AUTO_CAP", "Durability", "connected_replicas", "replicas_wanted"]

logger = logging.getLogger(__name__)

AUTO_CAP = 1  # unset, the fleet waits for at most this many replicas
_NO_WAIT_FIX = (
    "set RELAYDANCE_REDIS_MIN_REPLICAS=0 to submit without failover safety (a failover may "
    "then pay twice)"
)


def connected_replicas(client: redis.Redis) -> int:
    """Replicas connected to the primary ``client`` talks to."""
    return int(client.info("replication").get("connected_slaves", 0) or 0)


def replicas_wanted(setting: int | None, connected: int) -> int:
    """The replicas a durable write waits for: the setting, or ``connected`` capped at 1."""
    return min(connected, AUTO_CAP) if setting is None else setting


class Durability:
    """Runs a script, then ``WAIT`` for the wanted replicas, in one round trip."""

    def __init__(self, client: redis.Redis, *, replicas: int | None, timeout_ms: int) -> None:
        self._client = client
        self._setting = replicas
        self._wanted: int | None = replicas
        self.timeout_ms = timeout_ms
        self._lock = threading.Lock()
        self._loaded: set[str] = set()  # scripts this process put in the server's cache
        self.refusal: str | None = None  # what the server said when it refused WAIT

    @property
    def replicas(self) -> int:
        """Replicas a durable write waits for (read from the primary once, when unset)."""
        if self._wanted is None:
            with self._lock:
                if self._wanted is None:
                    connected = connected_replicas(self._client)
                    self._wanted = replicas_wanted(self._setting, connected)
                    logger.info(
                        "claims wait for %d Redis replica(s) before a POST (%d connected; %s)",
                        self._wanted, connected,
                        "failover safety off: a lone Redis" if not self._wanted else
                        f"WAIT up to {self.timeout_ms} ms",
                    )  # fmt: skip
        return self._wanted

    def run(self, script: Script, *, keys: Sequence[Any], args: Sequence[Any]) -> tuple[Any, bool]:
        """The script's result, and whether enough replicas confirmed its writes in time
        (always True when none are wanted: then no ``WAIT`` is sent)."""
        wanted = self.replicas
        if not wanted:
            return script(keys=keys, args=args), True
        result, acks = self._waited(script, keys, args, wanted)
        return result, acks >= wanted

    def _waited(
        self, script: Script, keys: Sequence[Any], args: Sequence[Any], wanted: int
    ) -> tuple[Any, int]:
        if script.sha not in self._loaded:  # else the first WAIT would go with a NOSCRIPT
            self._client.script_load(script.script)
            self._loaded.add(script.sha)
        for _ in range(2):
            pipe = self._client.pipeline(transaction=False)
            pipe.evalsha(script.sha, len(keys), *keys, *args)
            pipe.wait(wanted, self.timeout_ms)
            result, acks = pipe.execute(raise_on_error=False)
            if isinstance(result, redis.exceptions.NoScriptError):
                # A new primary (a failover, a restart) has an empty script cache.
                self._client.script_load(script.script)
                continue
            if isinstance(result, Exception):
                raise result
            if isinstance(acks, redis.ResponseError):  # a proxy or service without WAIT
                if self.refusal is None:
                    logger.error("this Redis refuses WAIT (%s): no claim can be confirmed, so "
                                 "no job is submitted; %s", acks, _NO_WAIT_FIX)  # fmt: skip
                self.refusal = str(acks)
                return result, 0
            if isinstance(acks, Exception):
                raise acks
            return result, int(acks)
        raise redis.exceptions.NoScriptError("the script vanished twice from Redis's cache")

    def refused(self, what: str) -> NotDurable:
        """The error for a write ``what`` that too few replicas confirmed."""
        if self.refusal is not None:
            return NotDurable(f"{what} could not be confirmed: this Redis refuses WAIT "
                              f"({self.refusal}); {_NO_WAIT_FIX}")  # fmt: skip
        return NotDurable(
            f"{what} was not confirmed by {self.replicas} Redis replica(s) within "
            f"{self.timeout_ms} ms (RELAYDANCE_REDIS_MIN_REPLICAS, RELAYDANCE_REDIS_WAIT_MS)"
        )
