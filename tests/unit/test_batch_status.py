"""A batch's lines, counted by group: the same groups on the batch page and in ``batch status``.

Lines that will never render are told apart (canceled, skipped for the budget, invalid),
and a submission whose outcome is unknown has its own group.
"""

from __future__ import annotations

import dataclasses

from worker.batch.budget import SKIPPED_BUDGET
from worker.batch.report import progress_line
from worker.batch.status import LINE_GROUPS, BatchStatus, made_from
from worker.batch.store import Item
from worker.job.record import JobState

LINE_STATES = {s.value for s in JobState} | {"pending", "lost", SKIPPED_BUDGET, "invalid"}


def status_of(states: dict[int, str]) -> BatchStatus:
    counts: dict[str, int] = {}
    for state in states.values():
        counts[state] = counts.get(state, 0) + 1
    return BatchStatus(id="rdb_x", name=None, alias="default", created_at=0.0,
                       lines=len(states), unique=len(states), counts=counts, budget_usd=1.4,
                       committed_usd=0.7, spent_usd=0.0, estimated_usd=2.1, canceled=False,
                       line_states=states)  # fmt: skip


def test_every_line_state_is_in_exactly_one_group() -> None:
    grouped = [state for group in LINE_GROUPS for state in group.states]
    assert sorted(grouped) == sorted(LINE_STATES)
    assert len({group.key for group in LINE_GROUPS}) == len(LINE_GROUPS)


def test_invalid_skipped_canceled_and_unknown_lines_are_counted_apart() -> None:
    status = status_of({1: "done", 2: "invalid", 3: "invalid", 4: SKIPPED_BUDGET,
                        5: "canceled", 6: "submit_unknown", 7: "queued"})  # fmt: skip
    counts = {group.key: n for group, n in status.grouped()}
    assert counts == {"done": 1, "running": 0, "waiting": 1, "unknown": 1, "failed": 0,
                      "canceled": 1, "skipped": 1, "invalid": 2}  # fmt: skip
    assert status.to_dict()["groups"] == counts
    line = progress_line(status, elapsed=1.0, done_before=0)
    for part in ("1/7 done", "0 running", "1 waiting", "0 failed", "1 unknown", "1 canceled",
                 "1 skipped (budget)", "2 invalid"):  # fmt: skip
        assert f" {part} |" in f" {line.split('] ', 1)[1]}", (part, line)


def test_groups_with_no_line_beyond_the_usual_four_are_left_out_of_the_progress_line() -> None:
    line = progress_line(status_of({1: "done", 2: "running"}), elapsed=1.0, done_before=0)
    assert "invalid" not in line and "skipped" not in line and "canceled" not in line
    assert "| 1 running | 0 waiting | 0 failed |" in line


def test_a_storyboard_status_shows_each_clip_beside_its_stills() -> None:
    items = {0: Item(0, "a", 1, {}), 1: Item(1, "b", 1, {}, refs=(0,)),
             2: Item(2, "c", 1, {}, refs=(0, 3)), 3: Item(3, "d", 1, {})}  # fmt: skip
    lines = [(1, 1), (2, 0), (3, 2), (4, 3), (5, 1)]  # line 5 repeats line 1's request
    chains = made_from(lines, items)
    assert chains == {1: (2,), 3: (2, 4), 5: (2,)}
    status = dataclasses.replace(status_of({
        1: "waiting_for_input", 2: "submitting", 3: "canceled", 4: "failed",
        5: "waiting_for_input",
    }), made_from=chains)  # fmt: skip
    assert status.chains()[:2] == [
        "line 1 (waiting_for_input) <- still line 2 (submitting)",
        "line 3 (canceled) <- still line 2 (submitting), line 4 (failed)",
    ]
    assert status.to_dict()["made_from"] == {"1": [2], "3": [2, 4], "5": [2]}
    assert "made_from" not in status_of({1: "done"}).to_dict()
