"""Retakes of a batch's jobs: the line renders again, within the batch's budget.

A retake is a new job for the same line (its item), usually with an edited prompt. Its
cost is reserved against the batch's budget exactly as a first take's is, atomically with
moving the line to the new job, so no number of retakes takes the committed money past
the cap. The line's earlier jobs are kept in order (``rd:batch:<id>:takes``): the report
shows the latest take and lists the others. A retake of a named clip is filed beside it
as ``<name>-take<N>``, so the first take's file is never overwritten.
"""

from __future__ import annotations

import logging
import uuid

from worker.batch.budget import from_micros
from worker.batch.naming import job_name, retake_name
from worker.batch.service import JOB_DONE_TASK
from worker.batch.store import BatchNotFound, BatchRecord, Item, job_of
from worker.batch.tracker import BatchTracker
from worker.errors import InvalidRequest
from worker.job.enqueue import NewJob, new_job, write_pending
from worker.job.record import Job, new_job_id
from worker.render.pricing import estimate_cost
from worker.render.request import RenderRequest

__all__ = ["retake_in_batch"]

logger = logging.getLogger(__name__)

_LEASE = 60.0

# KEYS: batch meta hash, item -> job hash, item -> earlier takes hash.
# ARGV: item, its expected value, the new job id, cost in micros, the job it replaces ('').
_RETAKE = """
if (redis.call('HGET', KEYS[2], ARGV[1]) or '') ~= ARGV[2] then return 'conflict' end
local cost = tonumber(ARGV[4])
local budget = redis.call('HGET', KEYS[1], 'budget_micros')
if budget and budget ~= '' and cost > 0 then
  local reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved_micros') or '0')
  if reserved + cost > tonumber(budget) then return 'over_budget' end
end
if cost > 0 then redis.call('HINCRBY', KEYS[1], 'reserved_micros', cost) end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
if ARGV[5] ~= '' then
  local takes = cjson.decode(redis.call('HGET', KEYS[3], ARGV[1]) or '[]')
  takes[#takes + 1] = ARGV[5]
  redis.call('HSET', KEYS[3], ARGV[1], cjson.encode(takes))
end
return 'ok'
"""


def retake_in_batch(tracker: BatchTracker, old: Job, request: RenderRequest) -> NewJob | None:
    """Write a pending retake of ``old`` (a batch's job) and return it; None when the
    batch has expired (the caller then retakes the job on its own).

    The caller sends the job's chain and confirms it (:func:`worker.job.enqueue.let_go`),
    as for any enqueue. Raises
    :class:`InvalidRequest` when the reservation would exceed the batch's budget.
    """
    assert old.batch is not None
    batch_id, _, index_text = old.batch.partition(":")
    try:
        record = tracker.store.load(batch_id)
    except BatchNotFound:
        return None
    index = int(index_text)
    item = tracker.store.items(batch_id, [index])[index]
    store, token = tracker.store, uuid.uuid4().hex
    new_id = new_job_id()
    # Held from before the claim until the job is written: a job missing after it is lost
    # (its reservation goes back), exactly as for a submitter.
    store.enter(batch_id, token, lease=_LEASE)
    try:
        current = store.jobs(batch_id).get(index, "")
        _claim(tracker, record, item, current, new_id)
        takes = len(store.takes(batch_id).get(index, [])) + 1
        new = new_job(
            tracker.engine, new_id, request=request.model_dump(mode="json"), alias=old.alias,
            cost=estimate_cost(request), on_done=JOB_DONE_TASK,
            extra=_fields(record, item, new_id, old, take=takes),
        )  # fmt: skip
        write_pending(tracker.engine, [new])
    finally:
        store.leave(batch_id, token)
        store.touch(batch_id, record.name)
    logger.info("batch %s line item %d: job %s retakes %s (take %d, $%.4f reserved)",
                batch_id, index, new_id, old.id, takes, from_micros(item.cost_micros))  # fmt: skip
    return new


def _claim(tracker: BatchTracker, record: BatchRecord, item: Item, current: str,
           new_id: str) -> None:  # fmt: skip
    """Reserve the retake's cost and point the line at it, in one step; or refuse."""
    script = tracker.engine.redis.register_script(_RETAKE)
    keys = [tracker.store.key(record.id, part) for part in ("", "jobs", "takes")]
    args: list[str | int] = [item.index, current, new_id, item.cost_micros, job_of(current) or ""]
    answer = str(script(keys=keys, args=args))
    if answer == "over_budget":
        loaded = tracker.store.load(record.id)
        budget = from_micros(loaded.budget_micros or 0)
        raise InvalidRequest([(
            "budget",
            f"a retake costs about ${from_micros(item.cost_micros):.2f}, and batch "
            f"{record.id} has ${from_micros(loaded.reserved_micros):.2f} of its "
            f"${budget:.2f} budget committed; raise it with: relaydance batch resume "
            f"{record.id} --budget USD (which also re-queues its failed and skipped lines)",
        )])  # fmt: skip
    if answer != "ok":
        raise InvalidRequest([("job", f"batch {record.id} changed while the retake was made "
                               "(another retake or a resume); try again")])  # fmt: skip


def _fields(record: BatchRecord, item: Item, new_id: str, old: Job, *, take: int) -> dict[str, str]:
    """The retake's own fields: its batch line, what it retakes, and its clip's name."""
    fields = {"batch": f"{record.id}:{item.index}", "retake_of": old.id}
    base = job_name(record, item, new_id)
    if base is not None and record.output_template is not None:
        fields["output_name"] = retake_name(base, take)
        fields["output_template"] = record.output_template
    return fields
