"""Batch records in Redis: what a batch holds, which job each of its requests became.

Keys (all expire after the job retention period, renewed on every write)::

    rd:batch:<id>          hash   name, key alias, budget and reserved micros, the line map,
                                  refused lines, the lines' own ids, --output-name, flags
    rd:batch:<id>:items    hash   item -> {"fp", "cost", "req", "refs"}: each request once
    rd:batch:<id>:jobs     hash   item -> job id | "reuse:<job id>" | "skipped_budget"
    rd:batch:<id>:final    hash   job id -> the final state it was first seen in
    rd:batch:<id>:busy     zset   submitters enqueueing now, scored by lease expiry
    rd:batch:<id>:takes    hash   item -> JSON list of its earlier jobs (retakes), oldest first
    rd:batchname:<name>    string the batch id of a name (creation by name is idempotent)
    rd:reuse:<alias>:<fp>  string the job id of a finished render of that content
    rd:batches:created     zset   batch id -> creation time (the jobs page lists from it;
                                  trimmed at two retention periods)

An item is a distinct request (by content fingerprint and key alias); duplicate lines
share one item and so one job. A line's ``key`` column names its own alias (and so its
provider); lines without one use the batch's. The reuse index is scoped by key alias so
that one tenant never receives another tenant's output.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from worker.batch.parse import InvalidLine
from worker.job.cas import text as _text
from worker.job.record import PREFIX

__all__ = [
    "REUSE_PREFIX",
    "BatchNotFound",
    "BatchRecord",
    "BatchStore",
    "Item",
    "job_of",
    "new_batch_id",
]

REUSE_PREFIX = "reuse:"
_CHUNK = 500

# KEYS: the name key. ARGV: candidate id, ttl, batch key prefix. An existing name wins
# unless its batch has expired.
_CLAIM_NAME = """
local cur = redis.call('GET', KEYS[1])
if cur and redis.call('EXISTS', ARGV[3] .. cur) == 1 then return cur end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
return ARGV[1]
"""


class BatchNotFound(LookupError):
    """No batch with this id or name (never created, or expired after the retention period)."""


def new_batch_id() -> str:
    """A fresh batch id."""
    return "rdb_" + uuid.uuid4().hex


@dataclass(frozen=True)
class Item:
    """One distinct request of a batch."""

    index: int
    fingerprint: str
    cost_micros: int
    request: dict[str, Any]
    alias: str | None = None  # the line's own key alias; None: the batch's
    refs: tuple[int, ...] = ()  # the image items whose stills it is made from, in order


@dataclass(frozen=True)
class BatchRecord:
    """A snapshot of a batch's own record (not of its jobs)."""

    id: str
    name: str | None
    alias: str
    created_at: float
    source: str
    digest: str
    lines: list[tuple[int, int]]  # (line number, item index), in line order
    invalid: list[InvalidLine]
    budget_micros: int | None = None
    reserved_micros: int = 0
    spent_micros: int = 0  # billed by the provider, for jobs settled final
    unknown_micros: int = 0  # possibly billed (an ambiguous submission), settled final
    reuse: bool = False
    canceled: bool = False
    on_done: str | None = None
    schedule: str | None = None
    line_ids: dict[int, str] = field(default_factory=dict)  # line -> the line's own id
    output_template: str | None = None  # --output-name; None: clips are <job id>.mp4
    extra: dict[str, str] = field(default_factory=dict)


class BatchStore:
    """Reads and writes batch records; budget changes go through :class:`Ledger`."""

    def __init__(self, client: redis.Redis, *, retention_seconds: int = 7 * 24 * 3600) -> None:
        self.redis = client
        self.retention = retention_seconds
        self._claim_name = client.register_script(_CLAIM_NAME)

    # Keys -------------------------------------------------------------------------------------

    def key(self, batch_id: str, part: str = "") -> str:
        """The Redis key of a batch's hash, or of one of its parts (items, jobs, final)."""
        return f"{PREFIX}:batch:{batch_id}" + (f":{part}" if part else "")

    @property
    def created_key(self) -> str:
        """The index of every batch by creation time."""
        return f"{PREFIX}:batches:created"

    def name_key(self, name: str) -> str:
        """The key that maps a batch name to its id."""
        return f"{PREFIX}:batchname:{name}"

    def reuse_key(self, alias: str, fingerprint: str) -> str:
        """The reuse-index key of a finished render of this content for this key alias."""
        return f"{PREFIX}:reuse:{alias}:{fingerprint}"

    def _keys(self, batch_id: str) -> list[str]:
        return [self.key(batch_id, part)
                for part in ("", "items", "jobs", "final", "busy", "takes")]  # fmt: skip

    # Writing ----------------------------------------------------------------------------------

    def create(
        self,
        *,
        items: Sequence[Item],
        lines: Sequence[tuple[int, int]],
        invalid: Sequence[InvalidLine],
        alias: str,
        source: str,
        digest: str,
        name: str | None = None,
        budget_micros: int | None = None,
        reuse: bool = False,
        on_done: str | None = None,
        schedule: str | None = None,
        line_ids: Mapping[int, str] | None = None,
        output_template: str | None = None,
    ) -> tuple[str, bool]:
        """Write a new batch; with a name already taken, that batch: (batch id, created)."""
        batch_id = new_batch_id()
        now = time.time()
        meta = _meta(
            alias=alias, created_at=now, source=source, digest=digest, lines=lines,
            invalid=invalid, budget_micros=budget_micros, reuse=reuse,
            optional={"name": name, "on_done": on_done, "schedule": schedule,
                      "output_name": output_template,
                      "line_ids": json.dumps(dict(line_ids)) if line_ids else None},
        )  # fmt: skip
        self._write(batch_id, meta, items, now=now)
        if not name:
            return batch_id, True
        winner = str(
            self._claim_name(
                keys=[self.name_key(name)],
                args=[batch_id, self.retention, f"{PREFIX}:batch:"],
            )
        )
        if winner != batch_id:
            self.redis.delete(*self._keys(batch_id))
            self.redis.zrem(self.created_key, batch_id)
            return winner, False
        return batch_id, True

    def _write(
        self, batch_id: str, meta: Mapping[Any, Any], items: Sequence[Item], *, now: float
    ) -> None:
        """A new batch's hash and items, and its entry in the creation index: one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(self.key(batch_id), mapping=dict(meta))
        for start in range(0, len(items), _CHUNK):
            chunk = items[start : start + _CHUNK]
            pipe.hset(
                self.key(batch_id, "items"),
                mapping={str(item.index): _item_json(item) for item in chunk},
            )
        for key in self._keys(batch_id)[:2]:
            pipe.expire(key, self.retention)
        pipe.zadd(self.created_key, {batch_id: now})
        pipe.zremrangebyscore(self.created_key, "-inf", now - 2 * self.retention)
        pipe.execute()

    def touch(self, batch_id: str, name: str | None = None) -> None:
        """Renew the expiry of every key of the batch (and its name)."""
        pipe = self.redis.pipeline(transaction=False)
        for key in self._keys(batch_id):
            pipe.expire(key, self.retention)
        if name:
            pipe.expire(self.name_key(name), self.retention)
        pipe.execute()

    def set_fields(self, batch_id: str, values: Mapping[str, str]) -> None:
        """Set fields of the batch hash."""
        fields: dict[Any, Any] = dict(values)  # redis-py types hset keys invariantly
        self.redis.hset(self.key(batch_id), mapping=fields)

    def delete_field(self, batch_id: str, *names: str) -> None:
        """Remove fields of the batch hash."""
        self.redis.hdel(self.key(batch_id), *names)

    def enter(
        self, batch_id: str, token: str, *, lease: float, pipe: redis.client.Pipeline | None = None
    ) -> None:
        """Mark one submitter as enqueueing for ``lease`` seconds (renewable), in ``pipe``."""
        (pipe or self.redis).zadd(self.key(batch_id, "busy"), {token: time.time() + lease})

    def leave(self, batch_id: str, token: str) -> None:
        """The submitter ``token`` is done enqueueing."""
        self.redis.zrem(self.key(batch_id, "busy"), token)

    def busy(self, batch_id: str) -> bool:
        """Whether any submitter holds a live lease on the batch."""
        return bool(self.redis.zcount(self.key(batch_id, "busy"), time.time(), "+inf"))

    # Reading ----------------------------------------------------------------------------------

    def find_name(self, name: str) -> str | None:
        """The id of the live batch of this name, if any."""
        found = self.redis.get(self.name_key(name))
        if found and self.redis.exists(self.key(_text(found))):
            return _text(found)
        return None

    def resolve(self, id_or_name: str) -> str:
        """A batch id from an id or a name; raises :class:`BatchNotFound`."""
        if self.redis.exists(self.key(id_or_name)):
            return id_or_name
        found = self.find_name(id_or_name)
        if found:
            return found
        raise BatchNotFound(
            f"no batch {id_or_name!r} (unknown, or expired after the retention period)"
        )

    def load(self, batch_id: str) -> BatchRecord:
        """The batch's record; raises :class:`BatchNotFound`."""
        raw = self.redis.hgetall(self.key(batch_id))
        if not raw:
            raise BatchNotFound(
                f"no batch {batch_id!r} (unknown, or expired after the retention period)"
            )
        data = {_text(k): _text(v) for k, v in raw.items()}
        known = {"alias", "created_at", "source", "digest", "lines", "invalid", "budget_micros",
                 "reserved_micros", "spent_micros", "unknown_micros", "reuse", "canceled",
                 "name", "on_done", "schedule", "output_name", "line_ids"}  # fmt: skip
        return BatchRecord(
            id=batch_id,
            name=data.get("name"),
            alias=data["alias"],
            created_at=float(data["created_at"]),
            source=data.get("source", ""),
            digest=data.get("digest", ""),
            lines=[(int(a), int(b)) for a, b in json.loads(data["lines"])],
            invalid=[InvalidLine.from_json(bad) for bad in json.loads(data.get("invalid", "[]"))],
            budget_micros=int(data["budget_micros"]) if data.get("budget_micros") else None,
            reserved_micros=int(data.get("reserved_micros", "0")),
            spent_micros=int(data.get("spent_micros", "0")),
            unknown_micros=int(data.get("unknown_micros", "0")),
            reuse=data.get("reuse") == "1",
            canceled=data.get("canceled") == "1",
            on_done=data.get("on_done"),
            schedule=data.get("schedule"),
            line_ids={int(k): str(v) for k, v in json.loads(data.get("line_ids", "{}")).items()},
            output_template=data.get("output_name"),
            extra={k: v for k, v in data.items() if k not in known},
        )

    def items(self, batch_id: str, indexes: Iterable[int] | None = None) -> dict[int, Item]:
        """The batch's distinct requests by index (all, or only ``indexes``)."""
        key = self.key(batch_id, "items")
        if indexes is None:
            raw = {_text(k): _text(v) for k, v in self.redis.hgetall(key).items()}
        else:
            wanted = [str(i) for i in indexes]
            values = self.redis.hmget(key, wanted) if wanted else []
            raw = {k: _text(v) for k, v in zip(wanted, values, strict=True) if v is not None}
        items: dict[int, Item] = {}
        for index, text in raw.items():
            data = json.loads(text)
            refs = tuple(data.get("refs", ()))
            items[int(index)] = Item(int(index), data["fp"], int(data["cost"]), data["req"],
                                     data.get("key"), refs)  # fmt: skip
        return items

    def jobs(self, batch_id: str) -> dict[int, str]:
        """Each claimed item's value: a job id, ``reuse:<job id>`` or ``skipped_budget``."""
        raw = self.redis.hgetall(self.key(batch_id, "jobs"))
        return {int(_text(k)): _text(v) for k, v in raw.items()}

    def takes(self, batch_id: str) -> dict[int, list[str]]:
        """Each retaken item's earlier jobs, oldest first (the item's value is the latest)."""
        raw = self.redis.hgetall(self.key(batch_id, "takes"))
        return {int(_text(k)): json.loads(_text(v)) for k, v in raw.items()}

    def finals(self, batch_id: str) -> dict[str, str]:
        """The final state each of the batch's jobs was first seen in."""
        raw = self.redis.hgetall(self.key(batch_id, "final"))
        return {_text(k): _text(v) for k, v in raw.items()}


def _item_json(item: Item) -> str:
    data: dict[str, Any] = {"fp": item.fingerprint, "cost": item.cost_micros, "req": item.request}
    data |= {"key": item.alias} if item.alias is not None else {}
    data |= {"refs": list(item.refs)} if item.refs else {}
    return json.dumps(data, separators=(",", ":"))


def job_of(value: str) -> str | None:
    """The job id an item value points at, if any."""
    if value.startswith(REUSE_PREFIX):
        return value[len(REUSE_PREFIX) :]
    return value if value.startswith("rdj_") else None


def _meta(
    *, alias: str, created_at: float, source: str, digest: str,
    lines: Sequence[tuple[int, int]], invalid: Sequence[InvalidLine],
    budget_micros: int | None, reuse: bool, optional: dict[str, str | None],
) -> dict[Any, Any]:  # fmt: skip
    """A new batch's hash (redis-py types hset keys invariantly, hence ``Any``)."""
    meta: dict[Any, Any] = {
        "alias": alias,
        "created_at": repr(created_at),
        "source": source,
        "digest": digest,
        "lines": json.dumps([list(pair) for pair in lines], separators=(",", ":")),
        "invalid": json.dumps([bad.to_json() for bad in invalid]),
        "budget_micros": "" if budget_micros is None else str(budget_micros),
        "reserved_micros": "0",
        "reuse": "1" if reuse else "0",
    }
    meta.update({name: value for name, value in optional.items() if value})
    return meta
