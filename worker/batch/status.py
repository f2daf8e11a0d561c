"""What a batch looks like from outside: the result of a submission, and its status.

Line states are the job states (``queued`` ... ``done``, ``failed``, ``canceled``) plus
the batch's own: ``pending`` (not enqueued yet), ``skipped_budget``, ``invalid`` (refused
at submission, with ``--skip-invalid``) and ``lost`` (claimed, but the job was never
written because its submitter died; a resume re-queues it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from worker.batch.budget import SKIPPED_BUDGET
from worker.batch.parse import InvalidLine
from worker.batch.store import BatchRecord, Item
from worker.job.record import FINAL_STATES

__all__ = [
    "FINAL_JOB_STATES",
    "LINE_GROUPS",
    "REQUEUE_STATES",
    "BatchStatus",
    "ItemView",
    "LineGroup",
    "Submission",
    "is_final_line_state",
    "made_from",
]

FINAL_JOB_STATES = frozenset(s.value for s in FINAL_STATES)
REQUEUE_STATES = frozenset({"failed", "canceled", "lost", SKIPPED_BUDGET})
_LINE_FINAL = FINAL_JOB_STATES | {"lost", SKIPPED_BUDGET, "invalid"}


class LineGroup(NamedTuple):
    """Lines counted together wherever a batch is shown: a key, a label, their states."""

    key: str  # for markup (a CSS class, a data attribute)
    label: str
    states: tuple[str, ...]


# Every line state in exactly one group, in the progress bar's order: the batch page's
# legend and ``relaydance batch status`` both read this table. Lines that will never
# render are told apart: canceled (a resume renders them), skipped for the budget (a resume
# with a higher --budget does) and invalid (refused at submission; fix the file).
LINE_GROUPS: tuple[LineGroup, ...] = (
    LineGroup("done", "done", ("done",)),
    LineGroup("running", "running",
              ("submitting", "submitted", "running", "generated", "downloading")),
    LineGroup("waiting", "waiting",
              ("pending", "waiting_for_input", "queued", "waiting_for_slot")),
    LineGroup("unknown", "unknown", ("submit_unknown",)),
    LineGroup("failed", "failed", ("failed", "lost")),
    LineGroup("canceled", "canceled", ("canceled",)),
    LineGroup("skipped", "skipped (budget)", (SKIPPED_BUDGET,)),
    LineGroup("invalid", "invalid", ("invalid",)),
)  # fmt: skip


def is_final_line_state(state: str) -> bool:
    """Whether a line's state will not change without a resume."""
    return state in _LINE_FINAL


@dataclass(frozen=True)
class Submission:
    """What one submit (or resume) pass did."""

    batch_id: str
    created: bool
    lines: int
    unique: int
    duplicates: int
    invalid: list[InvalidLine]
    enqueued: int = 0
    reused: int = 0
    skipped_budget: int = 0
    estimated_usd: float = 0.0
    committed_usd: float = 0.0


@dataclass(frozen=True)
class BatchStatus:
    """A batch's progress: line counts by state, and its money."""

    id: str
    name: str | None
    alias: str
    created_at: float
    lines: int
    unique: int
    counts: dict[str, int]
    budget_usd: float | None
    committed_usd: float
    spent_usd: float
    estimated_usd: float
    canceled: bool
    unknown_usd: float = 0.0  # possibly billed: submissions whose outcome is in doubt
    invalid: list[InvalidLine] = field(default_factory=list)
    line_states: dict[int, str] = field(default_factory=dict, repr=False)
    # Why a key of the batch is paused (its account, a model, its provider), per key alias.
    paused: dict[str, str] = field(default_factory=dict)
    # A storyboard's chains: each clip's line -> the lines of the stills it is made from.
    made_from: dict[int, tuple[int, ...]] = field(default_factory=dict, repr=False)

    @property
    def finished(self) -> bool:
        """Whether no line is queued or in flight any more."""
        return all(is_final_line_state(state) for state in self.line_states.values())

    def group(self, *states: str) -> int:
        """Number of lines in any of ``states``."""
        return sum(self.counts.get(state, 0) for state in states)

    @property
    def done(self) -> int:
        """Lines done."""
        return self.group("done")

    @property
    def failed(self) -> int:
        """Lines failed or lost."""
        return self.group("failed", "lost")

    @property
    def waiting(self) -> int:
        """Lines not yet sent to the provider."""
        return self.group("pending", "queued", "waiting_for_slot")

    @property
    def running(self) -> int:
        """Lines between submission and done."""
        return self.group("submitting", "submitted", "running", "generated", "downloading")

    @property
    def unknown(self) -> int:
        """Lines whose submission may have reached the provider (its reply was lost)."""
        return self.group("submit_unknown")

    def grouped(self) -> list[tuple[LineGroup, int]]:
        """Each group of :data:`LINE_GROUPS` with its line count, in order."""
        return [(group, self.group(*group.states)) for group in LINE_GROUPS]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "batch_id": self.id,
            "name": self.name,
            "key": self.alias,
            "created_at": self.created_at,
            "lines": self.lines,
            "unique": self.unique,
            "counts": dict(sorted(self.counts.items())),
            "groups": {group.key: count for group, count in self.grouped()},
            "finished": self.finished,
            "canceled": self.canceled,
            "budget_usd": self.budget_usd,
            "committed_usd": round(self.committed_usd, 6),
            "spent_usd": round(self.spent_usd, 6),
            "possibly_billed_usd": round(self.unknown_usd, 6),
            "estimated_usd": round(self.estimated_usd, 6),
            "invalid_lines": [bad.line for bad in self.invalid],
            "paused": dict(self.paused),
            **({"made_from": {str(k): list(v) for k, v in self.made_from.items()}}
               if self.made_from else {}),
        }  # fmt: skip

    def chains(self) -> list[str]:
        """Each clip made from stills, beside them: ``line 2 (done) <- still line 1 (done)``."""

        def shown(line: int) -> str:
            return f"line {line} ({self.line_states.get(line, '?')})"

        return [f"{shown(clip)} <- still {', '.join(shown(s) for s in stills)}"
                for clip, stills in sorted(self.made_from.items())]  # fmt: skip


def made_from(lines: list[tuple[int, int]], items: dict[int, Item]) -> dict[int, tuple[int, ...]]:
    """Each line whose item has refs -> the first lines of the items it names, in order."""
    first: dict[int, int] = {}
    for line, index in lines:
        first.setdefault(index, line)
    return {
        line: tuple(first[ref] for ref in items[index].refs if ref in first)
        for line, index in lines if index in items and items[index].refs
    }  # fmt: skip


@dataclass
class ItemView:
    """Every item of a batch, its value and its state, after settling newly final jobs."""

    record: BatchRecord
    items: dict[int, Item]
    values: dict[int, str]
    states: dict[int, str]
    live_spent: int = 0  # micros billed by jobs not final yet
    live_unknown: int = 0  # micros possibly billed by jobs not final yet
