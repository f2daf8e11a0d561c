"""Will this Redis keep what the fleet writes? Eviction, persistence, replicas, failover.

Job records, claims, slots and the waiting line live in Redis. A Redis that evicts keys
under memory pressure (any ``maxmemory-policy`` but ``noeviction``, the default of many
managed services) or keeps nothing across a restart (no append-only file, no snapshots)
forgets paid jobs. ``relaydance doctor`` fails on either, and each worker says so at start
as one ERROR line with the fix (:func:`forgetful_redis_line`). The replicas connected to
the primary are reported too: without one, a lost Redis host is a lost fleet state. And
whether failover safety is on: how many replicas confirm a claim before its POST leaves
(:mod:`worker.infra.durability`), with advice on the primary's ``min-replicas-to-write``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import redis

from worker.infra.durability import replicas_wanted

__all__ = ["Finding", "durability_findings", "failover_finding", "forgetful_redis_line"]

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


def failover_finding(
    client: redis.Redis, *, setting: int | None, wait_ms: int, sentinel: bool = False
) -> Finding:
    """Whether claims wait for replicas (``RELAYDANCE_REDIS_MIN_REPLICAS``) and can."""
    info = client.info("replication")
    if str(info.get("role", "?")) != "master":
        return Finding("failover", "skip", "not the primary (see replicas)")
    count = int(info.get("connected_slaves", 0) or 0)
    wanted = replicas_wanted(setting, count)
    if wanted > count:
        return Finding("failover", "fail", f"RELAYDANCE_REDIS_MIN_REPLICAS={wanted} but "
                       f"{count} replica(s) connected: no claim can be confirmed, so no job is "
                       "submitted; connect a replica, or lower the setting")  # fmt: skip
    if not wanted:
        why = (
            "a lone Redis"
            if not count
            else f"RELAYDANCE_REDIS_MIN_REPLICAS=0 with {count} replica(s)"
        )
        status: Status = "warn" if count or sentinel else "skip"
        return Finding("failover", status, f"failover safety is off ({why}): claims are not "
                       "confirmed by a replica before their POST, so a failover could lose one "
                       f"and pay twice ({DOCS})")  # fmt: skip
    try:
        client.wait(0, 1)  # answers at once where WAIT exists
    except redis.ResponseError as exc:
        return Finding("failover", "fail", f"this Redis refuses WAIT ({exc}): no claim can be "
                       "confirmed, so no job is submitted; set RELAYDANCE_REDIS_MIN_REPLICAS=0 "
                       "to submit without failover safety")  # fmt: skip
    detail = (f"claims wait for {wanted} of {count} replica(s) before their POST (WAIT, up "
              f"to {wait_ms} ms)")  # fmt: skip
    return _min_replicas_advice(client, count, detail)


def _min_replicas_advice(client: redis.Redis, count: int, detail: str) -> Finding:
    to_write = _config(client, "min-replicas-to-write")
    if to_write is None:
        return Finding("failover", "pass", detail)
    if int(to_write) >= count:
        return Finding("failover", "warn", f"{detail}; min-replicas-to-write {to_write} with "
                       f"{count} replica(s): losing one stops every write (the fleet pauses); "
                       "set it below the replicas you run")  # fmt: skip
    if count >= 2 and not int(to_write):
        detail += (
            "; consider min-replicas-to-write 1 (min-replicas-max-lag 10): a primary cut off "
            "from its replicas then refuses the new jobs a failover would lose"
        )
    return Finding("failover", "pass", detail)


def durability_findings(
    client: redis.Redis,
    *,
    sentinel: bool = False,
    min_replicas: int | None = None,
    wait_ms: int = 500,
) -> list[Finding]:
    """Eviction policy, persistence, replicas and failover safety of ``client``'s Redis."""
    return [
        _eviction(client),
        _persistence(client),
        _replicas(client, sentinel=sentinel),
        failover_finding(client, setting=min_replicas, wait_ms=wait_ms, sentinel=sentinel),
    ]


_NOT_MEMORY = frozenset({"replicas", "failover"})  # told apart: not about forgetting


def forgetful_redis_line(findings: list[Finding]) -> str | None:
    """The one line a worker logs at start when Redis may forget jobs; None when it keeps them."""
    failed = [f.detail for f in findings if f.status == "fail" and f.name not in _NOT_MEMORY]
    if not failed:
        return None
    return "REDIS MAY FORGET JOBS: " + "; ".join(failed) + f" ({DOCS})"
