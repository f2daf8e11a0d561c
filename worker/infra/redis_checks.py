"""Will this Redis keep what the fleet writes? Eviction, persistence and replicas.

Job records, claims, slots and the waiting line live in Redis. A Redis that evicts keys
under memory pressure (any ``maxmemory-policy`` but ``noeviction``, the default of many
managed services) or keeps nothing across a restart (no append-only file, no snapshots)
forgets paid jobs. ``relaydance doctor`` fails on either, and each worker says so at start
as one ERROR line with the fix (:func:`forgetful_redis_line`). The replicas connected to
the primary are reported too: without one, a lost Redis host is a lost fleet state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import redis

__all__ = ["Finding", "durability_findings", "forgetful_redis_line"]

Status = Literal["pass", "fail", "warn", "skip"]
DOCS = "docs/operations.md#failover"


@dataclass(frozen=True)
class Finding:
    """One fact about the Redis, judged."""

    name: str
    status: Status
    detail: str


def _config(client: redis.Redis, name: str) -> str | None:
    # Managed services often refuse CONFIG; INFO answers everywhere.
    try:
        found: dict[Any, Any] = client.config_get(name)
    except redis.ResponseError:
        return None
    value = found.get(name, found.get(name.encode()))
    return value.decode() if isinstance(value, bytes) else value


def _eviction(client: redis.Redis) -> Finding:
    policy = str(client.info("memory").get("maxmemory_policy", "unknown"))
    if policy == "noeviction":
        return Finding("eviction", "pass", "maxmemory-policy noeviction: no key is ever evicted")
    return Finding(
        "eviction", "fail",
        f"maxmemory-policy is {policy}: under memory pressure Redis deletes keys, among them "
        "job records, claims, limits and the waiting line; set maxmemory-policy noeviction "
        "(redis.conf, CONFIG SET, or your provider's parameter group)",
    )  # fmt: skip


def _persistence(client: redis.Redis) -> Finding:
    aof = str(client.info("persistence").get("aof_enabled", "0")) == "1"
    save = _config(client, "save")
    if aof:
        fsync = _config(client, "appendfsync")
        if fsync in (None, "always"):
            return Finding("persistence", "pass", f"append-only file on (fsync {fsync or '?'})")
        return Finding("persistence", "warn", f"append-only file with fsync {fsync}: a crash "
                       "can lose the last second of writes, a claim among them; set "
                       "appendfsync always")  # fmt: skip
    if save:
        return Finding("persistence", "warn", f"snapshots only (save {save}): a crash loses "
                       "every write since the last one; set appendonly yes")  # fmt: skip
    if save is None:
        return Finding("persistence", "warn", "append-only file off, snapshot settings "
                       "unreadable (CONFIG refused); set appendonly yes")  # fmt: skip
    return Finding(
        "persistence", "fail",
        "persistence is off (no append-only file, no snapshots): a restart of Redis forgets "
        "every job; set appendonly yes (and appendfsync always)",
    )  # fmt: skip


def _replicas(client: redis.Redis, *, sentinel: bool) -> Finding:
    info = client.info("replication")
    role = str(info.get("role", "?"))
    count = int(info.get("connected_slaves", 0) or 0)
    if role != "master":
        return Finding("replicas", "fail", f"this Redis is a {role}, not the primary: point "
                       "REDIS_URL at the primary (or at the sentinels)")  # fmt: skip
    if count:
        return Finding("replicas", "pass", f"{count} replica(s) connected to the primary")
    if sentinel:
        return Finding("replicas", "warn", "no replica connected: the sentinels have nothing "
                       f"to promote if the primary is lost ({DOCS})")  # fmt: skip
    return Finding("replicas", "skip", "a lone Redis, no replica: no failover if its host is "
                   f"lost ({DOCS})")  # fmt: skip


def durability_findings(client: redis.Redis, *, sentinel: bool = False) -> list[Finding]:
    """Eviction policy, persistence and replicas of the Redis behind ``client``."""
    return [_eviction(client), _persistence(client), _replicas(client, sentinel=sentinel)]


def forgetful_redis_line(findings: list[Finding]) -> str | None:
    """The one line a worker logs at start when Redis may forget jobs; None when it keeps them."""
    failed = [f.detail for f in findings if f.status == "fail" and f.name != "replicas"]
    if not failed:
        return None
    return "REDIS MAY FORGET JOBS: " + "; ".join(failed) + f" ({DOCS})"
