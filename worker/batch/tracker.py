"""Following a batch: the state of each of its items, read from the job store.

Job states are read, never copied, except the final state each job was first seen in:
recording it (once, atomically) is when a reservation the provider cannot have billed is
given back, when the job's spend is counted (billed, or possibly billed: the provider's
own figure where it reports one, else the estimate), and when a finished render enters
the reuse index.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from worker.batch.budget import (
    SKIPPED_BUDGET,
    Ledger,
    Settlement,
    from_micros,
    settlement,
    to_micros,
)
from worker.batch.status import (
    FINAL_JOB_STATES,
    BatchStatus,
    ItemView,
    is_final_line_state,
    made_from,
)  # fmt: skip
from worker.batch.store import REUSE_PREFIX, BatchRecord, BatchStore, Item, job_of
from worker.infra.waiting import wait_until_final
from worker.job.engine import Engine
from worker.job.record import Job
from worker.job.submit import SubmitRefused

__all__ = ["BatchTracker"]

logger = logging.getLogger(__name__)


class BatchTracker:
    """Reads a batch's progress and settles its finished jobs."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.store = BatchStore(
            engine.redis, retention_seconds=engine.settings.job_retention_seconds
        )
        self.ledger = Ledger(engine.redis)

    def _view(self, record: BatchRecord) -> ItemView:
        """Item states now, settling jobs that became final since last looked at."""
        items = self.store.items(record.id)
        values = self.store.jobs(record.id)
        finals = self.store.finals(record.id)
        states: dict[int, str] = {}
        live: list[tuple[int, str]] = []
        for index in items:
            value = values.get(index, "")
            job_id = job_of(value)
            if value == SKIPPED_BUDGET:
                states[index] = SKIPPED_BUDGET
            elif job_id is None:
                states[index] = "canceled" if record.canceled else "pending"
            elif job_id in finals:
                states[index] = finals[job_id]
            else:
                live.append((index, job_id))
        spent = unknown = 0
        if live:
            rows = self.engine.store.fields_of(
                [job_id for _, job_id in live],
                ["state", "billing", "orphans", "actual_cost", "retake_of", "duplicate_spend"],
            )
            lost = self._lost(record.id, [job for (_, job), row in zip(live, rows, strict=True)
                                          if row[0] is None])  # fmt: skip
            for (index, job_id), row in zip(live, rows, strict=True):
                state, billing, orphans, actual, retake_of, duplicates = row
                if state is None and job_id not in lost:
                    states[index] = "pending"  # claimed; its record is being written
                    continue
                money = self._money(items[index], values[index], state or "lost", billing,
                                    int(orphans or 0), actual, int(duplicates or 0))  # fmt: skip
                states[index] = self._settle(record, items[index], job_id, state or "lost", money,
                                             reusable=not retake_of)  # fmt: skip
                if states[index] not in FINAL_JOB_STATES:
                    spent, unknown = spent + money.spent, unknown + money.unknown
        return ItemView(record, items, values, states, live_spent=spent, live_unknown=unknown)

    def _lost(self, batch_id: str, missing: list[str]) -> set[str]:
        """Claimed jobs whose record will never appear.

        A submitter holds its lease from before its claim until after it wrote the job;
        so a job still missing when re-read after seeing no lease was never created.
        """
        if not missing or self.store.busy(batch_id):
            return set()
        states = self.engine.store.field_of(missing, "state")  # every record has one
        return {job for job, state in zip(missing, states, strict=True) if state is None}

    @staticmethod
    def _money(
        item: Item, value: str, state: str, billing: str | None, orphans: int,
        actual: str | None, duplicates: int = 0,
    ) -> Settlement:  # fmt: skip
        if value.startswith(REUSE_PREFIX):
            return Settlement()  # an earlier render: nothing reserved, nothing paid
        if state == "lost":
            return Settlement(release=item.cost_micros)  # its record was never written
        spent = to_micros(float(actual)) if actual else None
        return settlement(item.cost_micros, billing, orphans, actual_micros=spent,
                          duplicates=duplicates)  # fmt: skip

    def _settle(
        self, record: BatchRecord, item: Item, job_id: str, state: str, money: Settlement,
        *, reusable: bool = True,
    ) -> str:  # fmt: skip
        """Record a final state once, with its money; live states pass. A retake (whose
        prompt may have been edited) is never offered for reuse as the line's request."""
        if state not in FINAL_JOB_STATES and state != "lost":
            return state
        meta, final = self.store.key(record.id), self.store.key(record.id, "final")
        if self.ledger.settle(meta, final, job_id, state, money):
            if state == "done" and money.spent and reusable:
                self._index_done(item.alias or record.alias, item.fingerprint, job_id)
            if money.release and not money.spent:
                logger.info("batch %s job %s %s; released $%.4f (not billed)", record.id,
                            job_id, state, from_micros(money.release))  # fmt: skip
            elif money.unknown:
                logger.warning("batch %s job %s %s; $%.4f may have been billed, kept reserved",
                               record.id, job_id, state, from_micros(money.unknown))  # fmt: skip
        return state

    def _index_done(self, alias: str, fingerprint: str, job_id: str) -> None:
        self.engine.redis.set(
            self.store.reuse_key(alias, fingerprint),
            job_id,
            ex=self.engine.settings.job_retention_seconds,
        )

    def status(self, batch_id: str) -> BatchStatus:
        """Line counts by state and the batch's money; settles newly final jobs."""
        record = self.store.load(self.store.resolve(batch_id))
        view = self._view(record)
        return self._status(view)

    def _status(self, view: ItemView) -> BatchStatus:
        record = self.store.load(view.record.id)  # settling may have changed reservations
        line_states = {line: view.states[index] for line, index in record.lines}
        line_states.update({bad.line: "invalid" for bad in record.invalid})
        counts: dict[str, int] = {}
        for state in line_states.values():
            counts[state] = counts.get(state, 0) + 1
        return BatchStatus(
            id=record.id,
            name=record.name,
            alias=record.alias,
            created_at=record.created_at,
            lines=len(line_states),
            unique=len(view.items),
            counts=counts,
            budget_usd=None if record.budget_micros is None else from_micros(record.budget_micros),
            committed_usd=from_micros(record.reserved_micros),
            spent_usd=from_micros(record.spent_micros + view.live_spent),
            unknown_usd=from_micros(record.unknown_micros + view.live_unknown),
            estimated_usd=from_micros(sum(i.cost_micros for i in view.items.values())),
            canceled=record.canceled,
            invalid=record.invalid,
            line_states=line_states,
            paused=self._paused(view),
            made_from=made_from(record.lines, view.items),
        )

    def _paused(self, view: ItemView) -> dict[str, str]:
        """Why the keys of a batch with lines still waiting are paused, if they are."""
        if not view.record.alias or all(
            state not in ("pending", "queued", "waiting_for_slot") for state in view.states.values()
        ):
            return {}
        aliases = {item.alias or view.record.alias for item in view.items.values()}
        found = {alias: self.engine.limits.pause_summary(alias)[0] for alias in sorted(aliases)}
        return {alias: text for alias, text in found.items() if text}

    def view(self, batch_id: str) -> tuple[BatchStatus, ItemView]:
        """The status and the settled items (for reports)."""
        record = self.store.load(self.store.resolve(batch_id))
        view = self._view(record)
        return self._status(view), view

    def wait(
        self,
        batch_id: str,
        *,
        timeout: float = 3600.0,
        interval: float = 0.5,
        on_progress: Callable[[BatchStatus], None] | None = None,
    ) -> BatchStatus:
        """Block until every line is final (or ``timeout`` passes: :class:`TimeoutError`)."""
        return wait_until_final(
            lambda: self.status(batch_id),
            lambda status: status.finished,
            timeout=timeout,
            interval=interval,
            on_progress=on_progress,
            timeout_message=lambda status: (
                f"batch {batch_id} not finished after {timeout:.0f}s "
                f"({status.done} of {status.lines} lines done)"
            ),
        )

    # Cancel and notifications -----------------------------------------------------------------

    def cancel(self, batch_id: str, *, cancel_job: Callable[[str], bool]) -> int:
        """Stop enqueueing and cancel every job not final yet; returns how many were canceled.

        ``cancel_job`` cancels one job (the producer API's ``cancel``, which also frees the
        job's concurrency slot).
        """
        batch_id = self.store.resolve(batch_id)
        self.store.set_fields(batch_id, {"canceled": "1"})
        view = self._view(self.store.load(batch_id))
        canceled = 0
        for index, state in view.states.items():
            job_id = job_of(view.values.get(index, ""))
            # A "pending" job is being written by a submitter, which stops at the flag.
            if job_id is None or is_final_line_state(state) or state == "pending":
                continue
            if cancel_job(job_id):
                canceled += 1
        self._view(self.store.load(batch_id))  # settle what was just canceled
        logger.info("batch %s canceled (%d jobs)", batch_id, canceled)
        return canceled

    def job_done(self, summary: dict[str, Any]) -> None:
        """A job of a batch ended: settle it (done: index it for reuse), tell the producer."""
        job_id = str(summary.get("job_id", ""))
        job = self.engine.store.get(job_id)
        if job is None or job.batch is None:
            return
        batch_id, _, index_text = job.batch.partition(":")
        try:
            record = self.store.load(batch_id)
        except LookupError:
            return
        index = int(index_text or "-1")
        item = self.store.items(batch_id, [index]).get(index)
        meta, final = self.store.key(batch_id), self.store.key(batch_id, "final")
        if summary.get("state", "done") != "done" or item is None:
            self._view(record)  # failed or canceled: settled by what the provider billed
        else:
            # The job's own money: what it, and any earlier submission of it, may have cost.
            actual = None if job.actual_cost is None else to_micros(job.actual_cost)
            done = settlement(item.cost_micros, job.billing.value, job.orphans,
                              actual_micros=actual, duplicates=job.duplicate_spend)  # fmt: skip
            settled = self.ledger.settle(meta, final, job_id, "done", done)
            if settled and not job.retake_of:  # a retake never stands for the line's request
                self._index_done(item.alias or record.alias, item.fingerprint, job_id)
        if record.on_done:
            self.engine.send(record.on_done, {**summary, "batch_id": batch_id})

    def reserve_resubmission(self, job: Job) -> int:
        """Reserve a second submission's cost for a job of a budgeted batch, before the
        operator's resubmit: the first, in doubt, may be billed too. Returns the micros
        reserved (0 outside a batch); raises :class:`SubmitRefused` when there is no room."""
        if job.batch is None:
            return 0
        batch_id, _, index_text = job.batch.partition(":")
        try:
            record = self.store.load(batch_id)
        except LookupError:
            return 0
        item = self.store.items(batch_id, [int(index_text or "-1")]).get(int(index_text or "-1"))
        if item is None or item.cost_micros <= 0:
            return 0
        if not self.ledger.reserve(self.store.key(batch_id), item.cost_micros):
            raise SubmitRefused(
                f"resubmitting may pay twice (about ${from_micros(item.cost_micros):.2f} more), "
                f"and batch {record.id} has ${from_micros(record.reserved_micros):.2f} of its "
                f"${from_micros(record.budget_micros or 0):.2f} budget committed; raise it "
                f"with: relaydance batch resume {record.id} --budget USD"
            )
        return item.cost_micros

    def unreserve_resubmission(self, job: Job, micros: int) -> None:
        """Give back :meth:`reserve_resubmission`'s reservation (the resubmit did not happen)."""
        if micros and job.batch is not None:
            self.ledger.unreserve(self.store.key(job.batch.partition(":")[0]), micros)

    def job_ids(self, batch_id: str) -> dict[int, str]:
        """Each item's current job id (items without a job are left out)."""
        values = self.store.jobs(self.store.resolve(batch_id))
        return {index: job for index, value in values.items() if (job := job_of(value))}
