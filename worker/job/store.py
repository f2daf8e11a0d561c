"""The job store: reads and changes job records in Redis, each change one compare-and-set.

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

The store owns these keys: other modules ask it (never Redis) for what they hold.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import redis
from redis.exceptions import NoScriptError
from typing_extensions import Unpack

from worker.infra.durability import Durability
from worker.job.cas import ADD_RETAKE, CAS, Change, as_json, text
from worker.job.record import PREFIX, Job, new_job_id
from worker.job.states import FINAL_STATES, JobState
from worker.job.transitions import ABANDON_UNSENT, CANCEL, FAIL, Transition, check
from worker.job.url_keys import UrlKeys
from worker.render.pricing import estimate_cost
from worker.render.request import RenderRequest

__all__ = ["JobStore"]

_CREATED = ABANDON_UNSENT.sources  # the states a job is written in: queued, or waiting for stills


class JobStore(UrlKeys):
    """Reads and changes job records; every change is an atomic compare-and-set. The urls
    a record never holds are in keys of their own (:class:`~worker.job.url_keys.UrlKeys`)."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        retention_seconds: int = 7 * 24 * 3600,
        durability: Durability | None = None,
    ) -> None:
        self._redis = client
        self._retention = retention_seconds
        # Which replicas a durable change waits for; none unless the engine says.
        self.durability = durability or Durability(client, replicas=0, timeout_ms=1)
        self._cas = client.register_script(CAS)
        self._add_retake = client.register_script(ADD_RETAKE)
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
        ``pending``: no step acts on it until :meth:`confirm_pending` (worker.job.enqueue)."""
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
        state = str(fields.get("state", JobState.QUEUED.value))  # a clip may wait for stills
        pipe.hincrby(self.counts_key, state, 1)
        pipe.sadd(self.state_prefix + state, job_id)
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
        extra: Mapping[str, str] | None = None,
        job_id: str | None = None,
    ) -> str:
        """Record a validated request as a new ``queued`` job; return its (new) id."""
        job_id = job_id or new_job_id()
        self.create(job_id, request=request.model_dump(mode="json"), alias=alias,
                    cost=estimate_cost(request), on_done=on_done, pending=pending,
                    due_in=due_in, extra=extra)  # fmt: skip
        return job_id

    def add_retake(self, job_id: str, retake_id: str) -> bool:
        """Link a (final) job to a new job that takes it again; False if it expired."""
        return bool(self._add_retake(keys=[self.key(job_id)], args=[retake_id]))

    def abandon(self, job_id: str, *, reason: str) -> bool:
        """Cancel a job whose enqueue was never confirmed, so that it can never submit."""
        fields = {"error_code": "enqueue_failed", "error_message": reason[:2000]}
        return self.apply(job_id, ABANDON_UNSENT, where={"enqueue_pending": 1}, set=fields)[0]

    def get(self, job_id: str) -> Job | None:
        """The job's current record, or None when unknown or expired."""
        raw = self._redis.hgetall(self.key(job_id))
        if not raw:
            return None
        data = {text(k): text(v) for k, v in raw.items()}
        return Job.from_hash(job_id, data)

    def get_many(self, job_ids: list[str]) -> list[Job | None]:
        """The records of several jobs in one round trip (None for unknown ids)."""
        pipe = self._redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(self.key(job_id))
        jobs: list[Job | None] = []
        for job_id, raw in zip(job_ids, pipe.execute(), strict=True):
            data = {text(k): text(v) for k, v in raw.items()} if raw else None
            jobs.append(Job.from_hash(job_id, data) if data else None)
        return jobs

    def fields_of(self, job_ids: list[str], names: list[str]) -> list[list[str | None]]:
        """Some fields of several records in one round trip (None where missing); a record
        that no longer exists has no ``state``."""
        pipe = self._redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hmget(self.key(job_id), names)
        return [[None if v is None else text(v) for v in row] for row in pipe.execute()]

    def field_of(self, job_ids: list[str], name: str) -> list[str | None]:
        """One field of several records in one round trip (None where missing)."""
        return [row[0] for row in self.fields_of(job_ids, [name])]

    def forget_due(self, job_id: str) -> None:
        """Drop a job whose record expired from the schedule the sweeper reads."""
        self._redis.zrem(self.active_key, job_id)

    def apply(
        self,
        job_id: str,
        transition: Transition,
        *,
        only: Iterable[JobState] | None = None,
        **change: Unpack[Change],
    ) -> tuple[bool, JobState | None]:
        """Move the job by a declared ``transition`` (:mod:`worker.job.transitions`), the one
        way a job changes state: a compare-and-set that applies only if the job is in one
        of its from-states (or of ``only``, a subset: the state the caller read) and the
        :class:`Change`'s conditions hold. It writes the transition's own fields, then the
        change's ``set`` and ``incr`` (which add to them, never override them).

        Returns (applied, the state found before the change). Raises ValueError for an
        undeclared transition or a from-state it does not have.
        """
        states = check(transition, only)
        change["set"] = transition.fields(transition.sets, change.get("set"))
        change["incr"] = transition.fields(transition.incr, change.get("incr"))
        return self._change(job_id, states=states, to=transition.to, **change)

    def update_fields(
        self, job_id: str, *, states: Iterable[JobState], drop_due: bool = False,
        **change: Unpack[Change],
    ) -> tuple[bool, JobState | None]:  # fmt: skip
        """Write fields (and the due time: ``drop_due`` takes the job off the schedule) of
        a job in one of ``states``, leaving its state as it is; the same compare-and-set as
        :meth:`apply`. Returns (applied, the state found)."""
        return self._change(job_id, states=frozenset(states), drop_due=drop_due, **change)

    def _change(
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
        durable: bool = False,
        pipe: redis.client.Pipeline | None = None,
    ) -> tuple[bool, JobState | None]:
        # The raw compare-and-set, unguarded: ``states`` None is any non-final state. Only
        # apply, update_fields and confirm_pending call it (and tests, to set a record up).
        state_arg = "*" if states is None else ",".join(s.value for s in states)
        keys = [self.key(job_id), self.active_key, self.counts_key]
        args = [
            state_arg, to.value if to else "", repr(time.time()),
            "-" if drop_due else ("" if due is None else repr(due)), self._retention,
            as_json(where), as_json(where_not), as_json(set), as_json(incr), job_id,
            as_json(below), self.state_prefix,
        ]  # fmt: skip
        if pipe is not None:
            pipe.evalsha(self._cas.sha, len(keys), *keys, *args)
            return False, None
        confirmed = True
        if durable:
            (applied, found), confirmed = self.durability.run(self._cas, keys=keys, args=args)
        else:
            applied, found = self._cas(keys=keys, args=args)
        if applied and not confirmed:
            raise self.durability.refused(f"job {job_id}'s change")
        found_text = text(found)
        return bool(applied), JobState(found_text) if found_text else None

    def confirm_pending(self, job_ids: Sequence[str], *, due: float) -> list[str]:
        """Let pending jobs run (``enqueue_pending`` 1 -> 0, due at ``due``), in one round
        trip for them all; each job's state as found ("" for a record that is gone)."""
        for _ in range(2):  # a Redis restarted since the script was loaded: NOSCRIPT
            pipe = self._redis.pipeline(transaction=False)
            for job_id in job_ids:
                self._change(job_id, states=_CREATED, where={"enqueue_pending": 1},
                             set={"enqueue_pending": 0}, due=due, pipe=pipe)  # fmt: skip
            results = pipe.execute(raise_on_error=False)
            if not any(isinstance(r, NoScriptError) for r in results):
                break
            self._redis.script_load(CAS)
        for result in results:
            if isinstance(result, Exception):
                raise result
        return [text(found) for _, found in results]

    def fail(self, job_id: str, *, code: str, message: str) -> bool:
        """Move a non-final job to ``failed`` with its error code and message."""
        fields = {"error_code": code, "error_message": message[:2000]}
        return self.apply(job_id, FAIL, set=fields)[0]

    def cancel(self, job_id: str) -> bool:
        """Move a non-final job to ``canceled``."""
        return self.apply(job_id, CANCEL)[0]

    def due(self, *, before: float, limit: int = 1000) -> list[tuple[str, float]]:
        """Non-final jobs whose next step was due before ``before``, oldest first."""
        rows = self._redis.zrangebyscore(
            self.active_key, "-inf", before, start=0, num=limit, withscores=True
        )
        return [(text(row[0]), float(row[1])) for row in rows]

    def counts(self) -> dict[str, int]:
        """Number of jobs per state (final jobs counted until they expire from the index)."""
        return {text(k): int(v) for k, v in self._redis.hgetall(self.counts_key).items()}

    def active_count(self) -> int:
        """Number of non-final jobs."""
        return int(self._redis.zcard(self.active_key))

    def in_state(self, state: JobState) -> list[str]:
        """Ids of the jobs now in a non-final ``state``, sorted."""
        if state in FINAL_STATES:
            raise ValueError(f"final states are not indexed: {state}")
        return sorted(text(m) for m in self._redis.smembers(self.state_prefix + state.value))

    def read_gated(
        self, job_id: str, *, names: Iterable[str], gate: str, holder: str, window_ms: int
    ) -> tuple[dict[str, str] | None, bool]:
        """A job's fields and whether its webhook gate opened: :func:`.gated_read.read_gated`."""
        from worker.job.gated_read import read_gated

        return read_gated(self._redis, self.key(job_id), names=names, gate=gate,
                          holder=holder, window_ms=window_ms)  # fmt: skip
