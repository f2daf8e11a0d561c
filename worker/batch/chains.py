"""A storyboard's chains as a batch enqueues them: a still and the clips made from it.

A plan numbers a chain's items consecutively (:meth:`~worker.batch.plan.BatchPlan.chains`),
and the batch claims them in one call (:func:`chunks` never splits a chain), the first
claim checked for the chain's whole cost (:func:`~worker.batch.budget.chain_checks`): a
still is never made for a clip the budget would refuse. Their jobs are linked when they
are written (:func:`links`): a clip waits in ``waiting_for_input`` for the image jobs its
refs name (``waits_for``), and each of those names it (``feeds``), so the still's end
moves it on (:mod:`worker.job.inputs`). Once the chunk is confirmed, a clip whose stills
are done already (reused, or a resume of the clip alone) is moved on at once
(:func:`settle_clips`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TypeVar

from worker.batch.naming import job_name
from worker.batch.store import BatchRecord, Item, job_of
from worker.batch.storyboard import chain_roots
from worker.job.engine import Engine
from worker.job.inputs import FEEDS, WAITS_FOR, settle_waiting, waiting_fields
from worker.job.notify import notify_final
from worker.job.record import JobKind
from worker.job.states import FINAL_STATES
from worker.render.image_catalogue import is_image_model

__all__ = ["chain_of", "chunks", "job_fields", "links", "settle_clips"]

T = TypeVar("T", bound=tuple[int, str])
_UNCLAIMED = "unclaimed"  # a still no job was claimed for: the clip waiting for it is canceled


def chain_of(items: Mapping[int, Item]) -> dict[int, int]:
    """Each item's chain (the index of its first item); empty for a batch without refs
    (every item is then a chain of its own)."""
    if not any(item.refs for item in items.values()):
        return {}
    return chain_roots({index: item.refs for index, item in items.items()})


def chunks(candidates: Sequence[T], roots: Mapping[int, int], size: int) -> Iterator[list[T]]:
    """``candidates`` (item, expected value) in chunks of about ``size``; a chunk ends only
    where a chain does (``roots``: :func:`chain_of`), so a chain is claimed in one call."""
    chunk: list[T] = []
    for candidate in candidates:
        root = roots.get(candidate[0], candidate[0])
        if len(chunk) >= size and roots.get(chunk[-1][0], chunk[-1][0]) != root:
            yield chunk
            chunk = []
        chunk.append(candidate)
    if chunk:
        yield chunk


def links(
    created: Sequence[tuple[Item, str]], values: Mapping[int, str]
) -> dict[str, dict[str, str]]:
    """The fields that link the chunk's new jobs: a clip with refs waits for its stills'
    jobs (written in this chunk, or claimed before: ``values``, the batch's item values);
    a still's job names the clips of this chunk that wait for it."""
    job_of_item = {item.index: job_id for item, job_id in created}
    fields: dict[str, dict[str, str]] = {}
    feeds: dict[str, list[str]] = {}
    for item, job_id in created:
        if not item.refs:
            continue
        stills = [job_of_item.get(ref) or job_of(values.get(ref, "")) or _UNCLAIMED
                  for ref in item.refs]  # fmt: skip
        fields[job_id] = waiting_fields(stills)
        for still in stills:
            feeds.setdefault(still, []).append(job_id)
    for still, clips in feeds.items():
        if still in job_of_item.values():
            fields.setdefault(still, {})[FEEDS] = ",".join(clips)
    return fields


def job_fields(
    record: BatchRecord, item: Item, job_id: str, linked: Mapping[str, Mapping[str, str]]
) -> dict[str, str]:
    """A batch job's own fields: its line (one field, not two: a job hash is big enough
    already, see the benchmark), an image line's kind, its output's name, and its links
    (``linked``, from :func:`links`)."""
    extra = {"batch": f"{record.id}:{item.index}", **linked.get(job_id, {})}
    if is_image_model(item.request.get("model")):  # a clip's record says nothing of its kind
        extra["kind"] = JobKind.IMAGE.value
    named = job_name(record, item, job_id)
    if named is not None and record.output_template is not None:
        extra |= {"output_name": named, "output_template": record.output_template}
    return extra


def settle_clips(engine: Engine, linked: Mapping[str, Mapping[str, str]]) -> None:
    """Move on the chunk's confirmed waiting clips whose stills are done already; a clip
    whose still failed or was canceled ends canceled, and is told so.

    The stills' states are read in one round trip first: a clip whose stills are all
    still on their way is left to their own notices (they find it confirmed), so only
    a clip with a still already ended (or gone) is settled one by one."""
    waits = {job_id: [s for s in fields[WAITS_FOR].split(",") if s]
             for job_id, fields in linked.items() if WAITS_FOR in fields}  # fmt: skip
    stills = sorted({still for ids in waits.values() for still in ids})
    states = dict(zip(stills, engine.store.field_of(stills, "state"), strict=True))
    for job_id, ids in waits.items():
        if not any(states[still] in _ENDED for still in ids):
            continue
        if settle_waiting(engine, job_id) == "canceled":
            notify_final(engine, job_id)


# A still's state as read, or None (gone): either lets its waiting clip be settled now.
_ENDED = frozenset({None, *(state.value for state in FINAL_STATES)})
