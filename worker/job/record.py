"""The job record: a Redis hash per job, the source of truth; Celery messages only nudge it.

States are one-way::

    queued -> waiting_for_slot -> submitting -> submitted -> running -> generated
           -> downloading -> done            (or failed / canceled from any non-final state)
            (ambiguous reply) submitting -> submit_unknown -> submitted (its task found)

``submit_unknown`` is the ambiguous submission: the POST may have reached the provider
(its reply was lost), so the task may exist and be billed. Only an operator's
``relaydance resubmit`` sends such a job back to ``waiting_for_slot``.

Every change is one Lua compare-and-set: it applies only when the job is in an expected
state and any expected field values hold, so a duplicate, late or stale message that
finds the job past its step changes nothing. Claims only move forward: a step claims the
job with a number (its message's seq and attempt) that must exceed the last claim, so an
older message never performs the side effect. Non-final jobs sit in a sorted set scored
by the time their next step is due (the sweeper reads it) and in one set per state (for
listings). Final jobs expire after the retention period. Every job is also in sorted sets
scored by creation time (all jobs; by alias, model and batch), written with the record, so
the jobs page pages through thousands without a scan; an entry outlives its record by at
most a retention period and readers skip (and drop) entries whose record has expired.

``billing`` follows what the provider may have charged: ``none`` (nothing reached it),
``pending`` (a POST is in flight), ``unknown`` (it may have created a task), ``billed`` (it
did) or ``not_billed`` (the generation failed). Money is given back only for ``none`` and
``not_billed``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import redis

from worker.render.pricing import estimate_cost
from worker.render.request import RenderRequest

__all__ = ["FINAL_STATES", "Billing", "Job", "JobState", "JobStore", "new_job_id"]

PREFIX = "rd"


def new_job_id() -> str:
    """A fresh job id."""
    return "rdj_" + uuid.uuid4().hex


class JobState(StrEnum):
    """Where a job is; the order of declaration is the order of progress."""

    QUEUED = "queued"
    WAITING_FOR_SLOT = "waiting_for_slot"
    SUBMITTING = "submitting"
    SUBMIT_UNKNOWN = "submit_unknown"
    SUBMITTED = "submitted"
    RUNNING = "running"
    GENERATED = "generated"
    DOWNLOADING = "downloading"
    DONE = "done"
    FAILED = "failed"
    CANCELED = "canceled"


FINAL_STATES = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELED})


class Billing(StrEnum):
    """What the provider may have charged for the job (see the module docstring)."""

    NONE = "none"
    PENDING = "pending"
    UNKNOWN = "unknown"
    BILLED = "billed"
    NOT_BILLED = "not_billed"

    @property
    def refundable(self) -> bool:
        """Whether a reservation for the job may be given back: nothing was charged."""
        return self in (Billing.NONE, Billing.NOT_BILLED)


# KEYS: job hash, active zset, state counts hash.
# ARGV: states (comma list, '*' = any non-final), new state ('' = keep), now, due
# ('' keep, '-' drop), retention seconds, json {field: expected}, json {field: forbidden},
# json {field: value} to set, json {field: n} to increment, job id,
# json {field: n} each field must be below (a forward-only claim), per-state set prefix.
# Returns {1, previous state} when applied, {0, current state or ''} otherwise.
_CAS = """
local cur = redis.call('HGET', KEYS[1], 'state')
if not cur then return {0, ''} end
local finals = {done=true, failed=true, canceled=true}
local ok = false
if ARGV[1] == '*' then
  ok = not finals[cur]
else
  for s in string.gmatch(ARGV[1], '[^,]+') do if s == cur then ok = true end end
end
if not ok then return {0, cur} end
for f, v in pairs(cjson.decode(ARGV[6])) do
  if (redis.call('HGET', KEYS[1], f) or '') ~= tostring(v) then return {0, cur} end
end
for f, v in pairs(cjson.decode(ARGV[7])) do
  if (redis.call('HGET', KEYS[1], f) or '') == tostring(v) then return {0, cur} end
end
for f, n in pairs(cjson.decode(ARGV[11])) do
  if (tonumber(redis.call('HGET', KEYS[1], f)) or -1) >= tonumber(n) then return {0, cur} end
end
local now = ARGV[3]
for f, v in pairs(cjson.decode(ARGV[8])) do redis.call('HSET', KEYS[1], f, tostring(v)) end
for f, n in pairs(cjson.decode(ARGV[9])) do redis.call('HINCRBY', KEYS[1], f, n) end
redis.call('HSET', KEYS[1], 'updated_at', now)
local new = ARGV[2]
if new ~= '' and new ~= cur then
  redis.call('HSET', KEYS[1], 'state', new, 't_' .. new, now)
  redis.call('HINCRBY', KEYS[3], cur, -1)
  redis.call('HINCRBY', KEYS[3], new, 1)
  redis.call('SREM', ARGV[12] .. cur, ARGV[10])
  if not finals[new] then redis.call('SADD', ARGV[12] .. new, ARGV[10]) end
end
local state = redis.call('HGET', KEYS[1], 'state')
if finals[state] then
  redis.call('ZREM', KEYS[2], ARGV[10])
  redis.call('HDEL', KEYS[1], 'next_due')
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))
elseif ARGV[4] == '-' then
  redis.call('ZREM', KEYS[2], ARGV[10])
  redis.call('HDEL', KEYS[1], 'next_due')
elseif ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[2], tonumber(ARGV[4]), ARGV[10])
  redis.call('HSET', KEYS[1], 'next_due', ARGV[4])
end
return {1, cur}
"""

_INT_FIELDS = (
    "seq",
    "poll_count",
    "size",
    "attempts",
    "duplicate_spend",
    "submit_claim",
    "download_claim",
    "enqueue_pending",
    "orphans",
)
_FLOAT_FIELDS = (
    "next_due",
    "cost",
    "actual_cost",
    "created_at",
    "updated_at",
    "unknown_since",
)


@dataclass(frozen=True)
class Job:
    """A snapshot of one job record."""

    id: str
    state: JobState
    alias: str
    request: dict[str, Any]
    seq: int = 0
    poll_count: int = 0
    remote_task_id: str | None = None
    remote_status: str | None = None
    next_due: float | None = None
    error_code: str | None = None
    error_message: str | None = None
    output_path: str | None = None  # a local output's file; None in a bucket
    output_uri: str | None = None  # file:///... or s3://bucket/prefix/<job id>.mp4
    size: int | None = None
    sha256: str | None = None
    etag: str | None = None  # the object's ETag, in a bucket
    cost: float | None = None
    # What the provider says the task cost (Kinovi's creditsUsed), in USD, once it says.
    actual_cost: float | None = None
    on_done: str | None = None
    billing: Billing = Billing.NONE
    unknown_since: float | None = None
    orphans: int = 0
    submit_claim: int = 0
    download_claim: int = 0
    enqueue_pending: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0
    times: dict[str, float] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def is_final(self) -> bool:
        """Whether the job has reached done, failed or canceled."""
        return self.state in FINAL_STATES

    @property
    def possibly_billed(self) -> int:
        """Provider tasks this job may have paid for without knowing (0 when none)."""
        current = 1 if self.billing in (Billing.PENDING, Billing.UNKNOWN) else 0
        return self.orphans + current

    def summary(self) -> dict[str, Any]:
        """A JSON-ready view: what the CLI prints and the ``on_done`` callback receives."""
        return {
            "job_id": self.id,
            "state": self.state.value,
            "key": self.alias,
            "model": self.request.get("model"),
            "seconds": self.request.get("seconds"),
            "remote_task_id": self.remote_task_id,
            "polls": self.poll_count,
            "output_path": self.output_path,
            "output_uri": self.output_uri,
            "size": self.size,
            "sha256": self.sha256,
            "etag": self.etag,
            "estimated_cost": self.cost,
            "actual_cost": self.actual_cost,
            "billing": self.billing.value,
            "possibly_billed": self.possibly_billed,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "times": self.times,
            "duplicate_spend": int(self.extra.get("duplicate_spend", "0") or 0),
            "duplicate_remote_ids": json.loads(self.extra.get("duplicate_remote_ids") or "[]"),
        }

    @classmethod
    def from_hash(cls, job_id: str, data: Mapping[str, str]) -> Job:
        """Build a snapshot from the raw Redis hash."""
        known = {f.name for f in cls.__dataclass_fields__.values()}
        kwargs: dict[str, Any] = {"times": {}, "extra": {}}
        for key, value in data.items():
            if key.startswith("t_"):
                kwargs["times"][key[2:]] = float(value)
            elif key == "request":
                kwargs["request"] = json.loads(value)
            elif key == "state":
                kwargs["state"] = JobState(value)
            elif key == "billing":
                kwargs["billing"] = Billing(value) if value else Billing.NONE
            elif key in _INT_FIELDS and key in known:
                kwargs[key] = int(value)
            elif key in _FLOAT_FIELDS:
                kwargs[key] = float(value)
            elif key in known and key not in ("id", "times", "extra"):
                kwargs[key] = value or None
            else:
                kwargs["extra"][key] = value
        return cls(id=job_id, **kwargs)


class JobStore:
    """Reads and changes job records; every change is an atomic compare-and-set."""

    def __init__(self, client: redis.Redis, *, retention_seconds: int = 7 * 24 * 3600) -> None:
        self._redis = client
        self._retention = retention_seconds
        self._cas = client.register_script(_CAS)
        self.active_key = f"{PREFIX}:jobs:active"
        self.counts_key = f"{PREFIX}:jobs:counts"
        self.state_prefix = f"{PREFIX}:jobs:in:"
        self.created_key = f"{PREFIX}:jobs:created"

    def key(self, job_id: str) -> str:
        """The Redis key of a job's hash."""
        return f"{PREFIX}:job:{job_id}"

    def new_fields(
        self,
        *,
        request: Mapping[str, Any],
        alias: str,
        cost: float,
        now: float,
        due: float,
        on_done: str | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> dict[Any, Any]:
        """The hash of a new ``queued`` job."""
        fields: dict[Any, Any] = {  # redis-py types hset keys invariantly
            "state": JobState.QUEUED.value,
            "alias": alias,
            "request": json.dumps(dict(request), sort_keys=True),
            "seq": "0",
            "poll_count": "0",
            "cost": repr(cost),
            "created_at": repr(now),
            "updated_at": repr(now),
            "t_queued": repr(now),
            "next_due": repr(due),
        }
        if on_done:
            fields["on_done"] = on_done
        fields.update(extra or {})
        return fields

    def create(
        self,
        job_id: str,
        *,
        request: Mapping[str, Any],
        alias: str,
        cost: float,
        on_done: str | None = None,
        due_in: float = 120.0,
        extra: Mapping[str, str] | None = None,
        pending: bool = False,
    ) -> None:
        """Write a new ``queued`` job; the record exists before any message is sent.

        ``pending``: no step may act on the job until :meth:`confirm` (the producer's
        message was published); see :func:`tasks.api.enqueue_render`.
        """
        now = time.time()
        fields = self.new_fields(
            request=request, alias=alias, cost=cost, now=now, due=now + due_in,
            on_done=on_done, extra=extra,
        )  # fmt: skip
        if pending:
            fields["enqueue_pending"] = "1"
        pipe = self._redis.pipeline(transaction=True)
        self.queue_create(pipe, job_id, fields, due=now + due_in)
        pipe.execute()

    def queue_create(
        self, pipe: redis.client.Pipeline, job_id: str, fields: Mapping[Any, Any], *, due: float
    ) -> None:
        """Add the writes of a new ``queued`` job (its fields as :meth:`create` builds
        them) to ``pipe``: many jobs are then written in one round trip."""
        pipe.hset(self.key(job_id), mapping=dict(fields))
        pipe.zadd(self.active_key, {job_id: due})
        pipe.hincrby(self.counts_key, JobState.QUEUED.value, 1)
        pipe.sadd(self.state_prefix + JobState.QUEUED.value, job_id)
        self._queue_index(pipe, job_id, fields)

    def created_index(self, kind: str = "", value: str = "") -> str:
        """The creation-time index of every job, or of one ``alias``, ``model`` or ``batch``."""
        return f"{self.created_key}:{kind}:{value}" if kind else self.created_key

    def _queue_index(
        self, pipe: redis.client.Pipeline, job_id: str, fields: Mapping[Any, Any]
    ) -> None:
        # Trimmed at two retention periods: a job's record expires one retention after it
        # ends, and jobs end long before a retention period passes (or sit in a state set).
        created, horizon = float(fields["created_at"]), 2 * self._retention
        pipe.zadd(self.created_key, {job_id: created})
        pipe.zremrangebyscore(self.created_key, "-inf", created - horizon)
        model = json.loads(fields["request"]).get("model")
        batch = str(fields.get("batch", "")).partition(":")[0]
        for kind, value in (("alias", fields["alias"]), ("model", model), ("batch", batch)):
            if value:
                pipe.zadd(self.created_index(kind, str(value)), {job_id: created})
                pipe.expire(self.created_index(kind, str(value)), horizon)

    def create_render(
        self,
        request: RenderRequest,
        *,
        alias: str,
        on_done: str | None = None,
        pending: bool = False,
        due_in: float = 120.0,
    ) -> str:
        """Record a validated request as a new ``queued`` job; return its new id."""
        job_id = new_job_id()
        self.create(
            job_id,
            request=request.model_dump(mode="json"),
            alias=alias,
            cost=estimate_cost(request),
            on_done=on_done,
            pending=pending,
            due_in=due_in,
        )
        return job_id

    def confirm(self, job_id: str, *, due_in: float = 120.0) -> bool:
        """The producer's message left: steps may act on the pending job from now on."""
        applied, _ = self.change(
            job_id,
            states={JobState.QUEUED},
            where={"enqueue_pending": 1},
            set={"enqueue_pending": 0},
            due=time.time() + due_in,
        )
        return applied

    def abandon(self, job_id: str, *, reason: str) -> bool:
        """Cancel a job whose enqueue was never confirmed, so that it can never submit."""
        applied, _ = self.change(
            job_id,
            states={JobState.QUEUED},
            to=JobState.CANCELED,
            where={"enqueue_pending": 1},
            set={"error_code": "enqueue_failed", "error_message": reason[:2000]},
        )
        return applied

    def get(self, job_id: str) -> Job | None:
        """The job's current record, or None when unknown or expired."""
        raw = self._redis.hgetall(self.key(job_id))
        if not raw:
            return None
        data = {_text(k): _text(v) for k, v in raw.items()}
        return Job.from_hash(job_id, data)

    def get_many(self, job_ids: list[str]) -> list[Job | None]:
        """The records of several jobs in one round trip (None for unknown ids)."""
        pipe = self._redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(self.key(job_id))
        jobs: list[Job | None] = []
        for job_id, raw in zip(job_ids, pipe.execute(), strict=True):
            data = {_text(k): _text(v) for k, v in raw.items()} if raw else None
            jobs.append(Job.from_hash(job_id, data) if data else None)
        return jobs

    def change(
        self,
        job_id: str,
        *,
        states: Iterable[JobState] | None,
        to: JobState | None = None,
        where: Mapping[str, object] | None = None,
        where_not: Mapping[str, object] | None = None,
        set: Mapping[str, object] | None = None,
        incr: Mapping[str, int] | None = None,
        due: float | None = None,
        drop_due: bool = False,
        below: Mapping[str, int] | None = None,
    ) -> tuple[bool, JobState | None]:
        """Compare-and-set: apply only if the job is in ``states`` (None: any non-final)
        and every ``where`` field equals its value, no ``where_not`` field does, and every
        ``below`` field (a claim number; missing counts as -1) is below its value.

        Returns (applied, the state found before the change).
        """
        state_arg = "*" if states is None else ",".join(s.value for s in states)
        due_arg = "-" if drop_due else ("" if due is None else repr(due))
        applied, found = self._cas(
            keys=[self.key(job_id), self.active_key, self.counts_key],
            args=[
                state_arg,
                to.value if to else "",
                repr(time.time()),
                due_arg,
                self._retention,
                _json(where),
                _json(where_not),
                _json(set),
                _json(incr),
                job_id,
                _json(below),
                self.state_prefix,
            ],
        )
        found_text = _text(found)
        return bool(applied), JobState(found_text) if found_text else None

    def fail(self, job_id: str, *, code: str, message: str) -> bool:
        """Move a non-final job to ``failed`` with its error code and message."""
        applied, _ = self.change(
            job_id,
            states=None,
            to=JobState.FAILED,
            set={"error_code": code, "error_message": message[:2000]},
        )
        return applied

    def cancel(self, job_id: str) -> bool:
        """Move a non-final job to ``canceled``."""
        applied, _ = self.change(job_id, states=None, to=JobState.CANCELED)
        return applied

    def due(self, *, before: float, limit: int = 1000) -> list[tuple[str, float]]:
        """Non-final jobs whose next step was due before ``before``, oldest first."""
        rows = self._redis.zrangebyscore(
            self.active_key, "-inf", before, start=0, num=limit, withscores=True
        )
        return [(_text(row[0]), float(row[1])) for row in rows]

    def counts(self) -> dict[str, int]:
        """Number of jobs per state (final jobs counted until they expire from the index)."""
        raw = self._redis.hgetall(self.counts_key)
        return {_text(k): int(v) for k, v in raw.items()}

    def active_count(self) -> int:
        """Number of non-final jobs."""
        return int(self._redis.zcard(self.active_key))

    def in_state(self, state: JobState) -> list[str]:
        """Ids of the jobs now in a non-final ``state``, sorted."""
        if state in FINAL_STATES:
            raise ValueError(f"final states are not indexed: {state}")
        return sorted(_text(m) for m in self._redis.smembers(self.state_prefix + state.value))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _json(mapping: Mapping[str, object] | None) -> str:
    # cjson decodes '{}' and '[]' alike; an empty object must stay an object.
    return json.dumps({k: _plain(v) for k, v in (mapping or {}).items()}) if mapping else "{}"


def _plain(value: object) -> object:
    if isinstance(value, float):
        return repr(value)
    return value if isinstance(value, (str, int, bool)) else str(value)
