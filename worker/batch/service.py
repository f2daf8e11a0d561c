"""Submitting batches: claim each distinct request in line order, reserve its cost, write
its job and send it on.

A chunk's jobs are enqueued by the one protocol of single jobs (:mod:`worker.job.enqueue`):
written pending, one ``relaydance.resume_many`` sent (by name: the engine never imports
the task package), then confirmed; a job whose message never went is canceled unsent (a
resume re-queues its line). Each job's ``on_done`` is ``relaydance.batch_job_done``, which
settles it in its batch. A claim names the job id before the job exists; a submitter
holds a lease on the batch meanwhile, so that a job whose submitter died between claim
and write can be told from one being written (see :meth:`BatchTracker._lost`).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Sequence
from functools import partial

from config.task_names import BATCH_JOB_DONE as JOB_DONE_TASK
from config.task_names import RESUME_MANY as RESUME_MANY_TASK
from worker.batch.budget import Claim, ClaimResult, Settlement, chain_checks, from_micros, to_micros
from worker.batch.chains import chain_of, chunks, job_fields, links, settle_clips
from worker.batch.naming import check_plan_names
from worker.batch.parse import ParsedBatch
from worker.batch.plan import BatchPlan, InvalidBatch, plan_batch
from worker.batch.status import REQUEUE_STATES, ItemView, Submission
from worker.batch.store import REUSE_PREFIX, BatchRecord, Item
from worker.batch.tracker import BatchTracker
from worker.errors import EnqueueFailed, InvalidRequest, NotDurable
from worker.job.enqueue import enqueue_jobs, new_job
from worker.job.record import JobState, new_job_id
from worker.render.aliases import alias_problem
from worker.render.pricing import PriceTable

__all__ = ["JOB_DONE_TASK", "Batches"]

logger = logging.getLogger(__name__)

BUSY_LEASE = 60.0  # a submitter renews it per chunk; a job missing after it is lost
_CHUNK = 200
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


class Batches(BatchTracker):
    """Submit, resume, follow and cancel batches over one engine."""

    def submit(
        self,
        parsed: ParsedBatch,
        *,
        key: str = "default",
        budget: float | None = None,
        name: str | None = None,
        reuse: bool = False,
        skip_invalid: bool = False,
        on_done: str | None = None,
        schedule: str | None = None,
        resume_existing: bool = True,
        prices: PriceTable | None = None,
        output_name: str | None = None,
    ) -> Submission:
        """Enqueue a checked batch; a name already used continues that batch instead.

        Raises :class:`InvalidBatch` (nothing enqueued) when lines are invalid and
        ``skip_invalid`` is false, :class:`InvalidRequest` for bad options.
        """
        if parsed.invalid and not skip_invalid:
            raise InvalidBatch(parsed.invalid)
        self._check_options(key=key, budget=budget, name=name, on_done=on_done)
        if not parsed.lines:
            raise InvalidRequest([("file", "no valid line left to submit; fix the lines above")])
        plan = plan_batch(parsed, prices=prices)
        if output_name is not None:  # every clip's name, checked before anything is written
            check_plan_names(output_name, plan, batch=name, key=key, now=time.time())
        digest = plan.digest(key)
        batch_id, created = self._find_or_create(
            plan, parsed, key=key, digest=digest, name=name, budget=budget, reuse=reuse,
            on_done=on_done, schedule=schedule, output_name=output_name,
        )  # fmt: skip
        record = self.store.load(batch_id)
        if not created:
            record = self._continue(record, digest=digest, name=name, reuse=reuse,
                                    budget=budget, resume=resume_existing,
                                    output_name=output_name)  # fmt: skip
        counts = self._enqueue(record, requeue=not created and resume_existing)
        return self._submission(record, plan, created=created, counts=counts)

    def _find_or_create(
        self, plan: BatchPlan, parsed: ParsedBatch, *, key: str, digest: str, name: str | None,
        budget: float | None, reuse: bool, on_done: str | None, schedule: str | None,
        output_name: str | None,
    ) -> tuple[str, bool]:  # fmt: skip
        """The batch of this name (a resubmission, the common case: no copy is written), or
        a new batch; its id, and whether it was created."""
        existing = self.store.find_name(name) if name else None
        if existing is not None:
            return existing, False
        return self.store.create(
            items=[
                Item(i.index, i.fingerprint, i.cost_micros,
                     i.request.model_dump(mode="json"), i.alias, i.refs)
                for i in plan.items
            ],
            lines=plan.line_items, invalid=plan.invalid, alias=key, source=parsed.source,
            digest=digest, name=name,
            budget_micros=None if budget is None else to_micros(budget),
            reuse=reuse, on_done=on_done, schedule=schedule, line_ids=plan.line_ids,
            output_template=output_name,
        )  # fmt: skip

    def _continue(
        self, record: BatchRecord, *, digest: str, name: str | None, reuse: bool,
        budget: float | None, resume: bool, output_name: str | None,
    ) -> BatchRecord:  # fmt: skip
        """A batch submitted again by name: the same requests, key and names, or refused."""
        if record.digest != digest:
            raise InvalidRequest(
                [("name", f"batch {name!r} ({record.id}) already exists with other requests "
                  "or another key; choose another --name, or resume it by id")]
            )  # fmt: skip
        if output_name is not None and output_name != record.output_template:
            raise InvalidRequest(
                [("output_name", f"batch {name!r} ({record.id}) names its clips "
                  f"{record.output_template or '<job id>'!r}; give the same --output-name, "
                  "or choose another --name")]
            )  # fmt: skip
        changes = {"reuse": "1"} if reuse and not record.reuse else {}
        if budget is not None:
            changes["budget_micros"] = str(to_micros(budget))
        if changes:
            self.store.set_fields(record.id, changes)
        if resume:  # submitting again by name is a resume: it lifts a cancel
            self.store.delete_field(record.id, "canceled")
        logger.info("batch %s name=%s exists; continuing it", record.id, name)
        return self.store.load(record.id)

    def resume(self, batch_id: str, *, budget: float | None = None) -> Submission:
        """Re-queue failed, canceled, lost and budget-skipped lines; finished lines stay."""
        batch_id = self.store.resolve(batch_id)
        changes: dict[str, str] = {}
        if budget is not None:
            self._check_options(key=None, budget=budget, name=None, on_done=None)
            changes["budget_micros"] = str(to_micros(budget))
        if changes:
            self.store.set_fields(batch_id, changes)
        self.store.delete_field(batch_id, "canceled")
        record = self.store.load(batch_id)
        counts = self._enqueue(record, requeue=True)
        items = self.store.items(batch_id)
        return Submission(
            batch_id=batch_id,
            created=False,
            lines=len(record.lines),
            unique=len(items),
            duplicates=len(record.lines) - len(items),
            invalid=record.invalid,
            enqueued=counts["ok"],
            reused=counts["reused"],
            skipped_budget=counts["skipped"],
            estimated_usd=from_micros(sum(i.cost_micros for i in items.values())),
            committed_usd=from_micros(self.store.load(batch_id).reserved_micros),
        )

    def _check_options(
        self, *, key: str | None, budget: float | None, name: str | None, on_done: str | None
    ) -> None:
        problems: list[tuple[str, str]] = []
        bad_key = None if key is None else alias_problem(key, self.engine.settings.keys())
        if bad_key:
            problems.append(("key", bad_key))
        if budget is not None and not budget >= 0:
            problems.append(("budget", f"{budget} is negative; give USD >= 0, e.g. 25"))
        if name is not None and not _NAME.match(name):
            problems.append(
                ("name", f"{name!r} is not a usable name; use letters, digits, . _ : - "
                 "(at most 128, starting with a letter or digit)")
            )  # fmt: skip
        if on_done is not None and not on_done.strip():
            problems.append(("on_done", "is empty; give a Celery task name or leave it out"))
        if problems:
            raise InvalidRequest(problems)

    def _submission(
        self, record: BatchRecord, plan: BatchPlan, *, created: bool, counts: dict[str, int]
    ) -> Submission:
        return Submission(
            batch_id=record.id,
            created=created,
            lines=len(plan.line_items),
            unique=len(plan.items),
            duplicates=plan.duplicates,
            invalid=plan.invalid,
            enqueued=counts["ok"],
            reused=counts["reused"],
            skipped_budget=counts["skipped"],
            estimated_usd=from_micros(plan.total_micros),
            committed_usd=from_micros(self.store.load(record.id).reserved_micros),
        )

    def _enqueue(self, record: BatchRecord, *, requeue: bool) -> dict[str, int]:
        """One pass over the batch's items in line order: claim, reserve, create, send."""
        view = self._view(record)
        candidates = [
            (index, view.values.get(index, ""))
            for index in sorted(view.items)
            if index not in view.values or (requeue and view.states[index] in REQUEUE_STATES)
        ]
        counts = {"ok": 0, "reused": 0, "skipped": 0, "conflict": 0}
        if not candidates:
            return counts
        meta, jobs_key = self.store.key(record.id), self.store.key(record.id, "jobs")
        exhausted = False
        token = uuid.uuid4().hex
        self.store.enter(record.id, token, lease=BUSY_LEASE)
        try:
            roots = chain_of(view.items)
            for chunk in chunks(candidates, roots, _CHUNK):  # a chain in one claim call
                claims = chain_checks(self._claims(record, view, chunk), roots)  # reserved whole
                results = self._reserve(record, meta, jobs_key, claims, exhausted=exhausted)
                if results == ["canceled"]:
                    logger.info("batch %s canceled; enqueueing stopped", record.id)
                    break
                created = self._settle_claims(record, view, claims, results, counts)
                exhausted = exhausted or "skipped" in results
                self._create_jobs(record, created, token=token)
        finally:
            self.store.leave(record.id, token)
            self.store.touch(record.id, record.name)
        logger.info(
            "batch %s key=%s enqueued=%d reused=%d skipped_budget=%d conflicts=%d",
            record.id, record.alias, counts["ok"], counts["reused"], counts["skipped"],
            counts["conflict"],
        )  # fmt: skip
        return counts

    def _reserve(
        self, record: BatchRecord, meta: str, jobs_key: str, claims: list[Claim], *,
        exhausted: bool,
    ) -> list[ClaimResult]:  # fmt: skip
        """Claim and reserve a chunk; no job is made for a reservation a failover could lose
        (its lines count as lost once the submitter's lease ends: a resume takes them)."""
        durability = self.engine.store.durability
        try:
            return self.ledger.claim(meta, jobs_key, claims, exhausted=exhausted,
                                     durability=durability)  # fmt: skip
        except NotDurable as exc:
            raise NotDurable(
                f"batch {record.id}: {exc}; its remaining lines were not enqueued: run "
                f"`relaydance batch resume {record.id}` once `relaydance doctor` shows the "
                "replicas connected"
            ) from exc

    def _claims(
        self, record: BatchRecord, view: ItemView, chunk: list[tuple[int, str]]
    ) -> list[Claim]:
        """A claim per line of the chunk: a finished job to reuse, else a new job id."""
        reusable = self._reusable(record.alias, [view.items[i] for i, _ in chunk]) if (
            record.reuse
        ) else {}  # fmt: skip
        claims = []
        for index, expect in chunk:
            found = reusable.get(index)
            if found:
                claims.append(Claim(index, expect, REUSE_PREFIX + found, 0))
            else:
                claims.append(Claim(index, expect, new_job_id(), view.items[index].cost_micros))
        return claims

    def _settle_claims(
        self, record: BatchRecord, view: ItemView, claims: list[Claim], results: Sequence[str],
        counts: dict[str, int],
    ) -> list[tuple[Item, str]]:  # fmt: skip
        """Count the chunk's answers; reused lines settle at once; the jobs to create."""
        meta = self.store.key(record.id)
        created: list[tuple[Item, str]] = []
        for claim, result in zip(claims, results, strict=True):
            if result == "ok" and claim.new.startswith(REUSE_PREFIX):
                job_id = claim.new[len(REUSE_PREFIX) :]
                self.ledger.settle(
                    meta, self.store.key(record.id, "final"), job_id, "done", Settlement()
                )
                counts["reused"] += 1
            elif result == "ok":
                created.append((view.items[claim.item], claim.new))
                counts["ok"] += 1
            elif result == "skipped":
                counts["skipped"] += 1
            else:
                counts["conflict"] += 1
        return created

    def _create_jobs(
        self, record: BatchRecord, jobs: list[tuple[Item, str]], *, token: str
    ) -> None:
        """Enqueue a chunk's jobs: written pending in one round trip (which also renews the
        submitter's lease), nudged with one message, confirmed in one round trip.

        A message per job cost about a millisecond each to build and publish; a worker
        fans ``relaydance.resume_many`` out to each job's chain instead. Should that
        message be lost once it left, the sweeper resumes the jobs once they are overdue.
        """
        pipe = self.engine.redis.pipeline(transaction=False)
        self.store.enter(record.id, token, lease=BUSY_LEASE, pipe=pipe)
        if not jobs:
            pipe.execute()
            return
        engine, now = self.engine, time.time()
        linked = links(jobs, self.store.jobs(record.id) if any(i.refs for i, _ in jobs) else {})
        new = [
            new_job(
                engine, job_id, request=item.request, alias=item.alias or record.alias,
                cost=from_micros(item.cost_micros), on_done=JOB_DONE_TASK,
                extra=job_fields(record, item, job_id, linked), now=now,
            )
            for item, job_id in jobs
        ]  # fmt: skip
        try:
            send = partial(engine.send, RESUME_MANY_TASK, [job.id for job in new])
            enqueue_jobs(engine, new, send, pipe=pipe, canceled_ok=True)
        except EnqueueFailed as exc:
            raise EnqueueFailed(
                f"batch {record.id}: {exc}; its remaining lines were not enqueued: run "
                f"`relaydance batch resume {record.id}` once the broker answers"
            ) from exc
        settle_clips(engine, linked)

    def _reusable(self, alias: str, items: list[Item]) -> dict[int, str]:
        """Items whose content an earlier job already rendered (and that job is done)."""
        pipe = self.engine.redis.pipeline(transaction=False)
        for item in items:
            pipe.get(self.store.reuse_key(item.alias or alias, item.fingerprint))
        found = [(item, str(job)) for item, job in zip(items, pipe.execute(), strict=True) if job]
        if not found:
            return {}
        states = self.engine.store.field_of([job_id for _, job_id in found], "state")
        return {
            item.index: job_id
            for (item, job_id), state in zip(found, states, strict=True)
            if state == JobState.DONE.value
        }
