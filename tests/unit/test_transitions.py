"""The transition table is total, and it is the only way a job's state changes."""

from __future__ import annotations

import ast
import dataclasses
from collections import deque
from pathlib import Path
from typing import Any

import pytest

from worker.job import gated_read, transitions
from worker.job.cas import CAS
from worker.job.states import (
    FINAL_STATES,
    FINAL_STATES_LUA,
    HOLDS_SLOT,
    IMAGE_PLAN,
    LIVE_STATES,
    PLAN,
    REMOTE_MAY_BE_LIVE,
    STEP_STATES,
    TASK_MAY_EXIST,
    JobState,
    is_final,
    steps_from,
)
from worker.job.store import JobStore
from worker.job.transitions import (
    ABANDON_UNSENT,
    BACK_IN_TIME,
    CANCEL,
    FAIL,
    INPUT_FAILED,
    INPUT_READY,
    MOVES,
    SUBMIT_ACCEPTED,
    TRANSITIONS,
    Transition,
    check,
)

S = JobState
ROOT = Path(__file__).resolve().parents[2]


def test_every_state_is_reachable_from_the_states_a_job_is_written_in() -> None:
    created = {S.QUEUED, S.WAITING_FOR_INPUT}  # a storyboard's clip waits for its stills
    assert ABANDON_UNSENT.sources == created
    seen, todo = set(created), deque(created)
    while todo:
        for target in MOVES[todo.popleft()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    assert seen == set(JobState)


def test_every_live_state_has_a_way_out_and_every_final_state_none() -> None:
    for state in JobState:
        assert bool(MOVES[state]) is not is_final(state), state
    for state in LIVE_STATES:
        assert {S.FAILED, S.CANCELED} <= MOVES[state], f"{state} cannot fail or be canceled"


def test_every_state_a_step_acts_in_is_left_by_a_transition_of_that_step() -> None:
    scheduled = {t.then for t in TRANSITIONS.values()}
    for step, states in STEP_STATES.items():
        assert step in scheduled or step == "prepare", f"no transition schedules {step}"
        for state in states:
            leaving = [t for t in TRANSITIONS.values() if state in t.sources and t.to is not state]
            assert leaving, f"{step} acts in {state}, which no transition leaves"


def test_every_transition_starts_from_live_states_and_schedules_its_plan() -> None:
    order = list(JobState)
    for name, t in TRANSITIONS.items():
        assert t.name == name and t.sources, name
        assert not t.sources & FINAL_STATES, f"{name} starts from a final state"
        assert t.then == (PLAN[t.to][0] if t.to in PLAN else None), name
        if t.to in IMAGE_PLAN and t is not INPUT_READY:  # only a clip waits for stills
            # An image job has no prepare (no urls to make): it goes on to the clip's next.
            assert IMAGE_PLAN[t.to][0] == PLAN[t.to][t.then == "prepare"], name
        if t.then is not None:
            assert t.to in STEP_STATES[t.then], f"{name}: {t.then} does not act in {t.to}"
        for source in t.sources - {t.to}:
            back_in_line = t.to is S.WAITING_FOR_SLOT  # a 429, or an operator's resubmit
            final = t.to in FINAL_STATES
            assert back_in_line or final or order.index(t.to) > order.index(source), name


def test_an_image_job_reaches_done_without_a_poll_by_moves_of_its_own_plan() -> None:
    steps = {step for plan in IMAGE_PLAN.values() for step in plan}
    assert steps == {"submit", "download"}
    image_moves = {
        t.name for t in TRANSITIONS.values()
        if t.to in set(IMAGE_PLAN) | FINAL_STATES | {S.SUBMIT_UNKNOWN} and t.sources & set(IMAGE_PLAN)
    }  # fmt: skip
    seen, todo = {S.QUEUED}, deque([S.QUEUED])
    while todo:
        state = todo.popleft()
        for name in image_moves:
            t = TRANSITIONS[name]
            if state in t.sources and t.to not in seen:
                seen.add(t.to)
                todo.append(t.to)
    assert S.DONE in seen and not seen & {S.SUBMITTED, S.RUNNING}
    for state, plan in IMAGE_PLAN.items():
        assert state in STEP_STATES[plan[0]], state
        assert {S.FAILED, S.CANCELED} <= MOVES[state], state


def test_a_clip_waiting_for_its_stills_is_queued_or_canceled_unbilled_and_holds_no_slot() -> None:
    assert MOVES[S.WAITING_FOR_INPUT] == {S.QUEUED, S.CANCELED, S.FAILED}
    assert (INPUT_READY.sources, INPUT_READY.to) == ({S.WAITING_FOR_INPUT}, S.QUEUED)
    assert (INPUT_FAILED.sources, INPUT_FAILED.to) == ({S.WAITING_FOR_INPUT}, S.CANCELED)
    assert INPUT_FAILED.sets["billing"] == "none" and not INPUT_READY.sets
    assert not any(S.WAITING_FOR_INPUT in states for states in STEP_STATES.values())
    assert S.WAITING_FOR_INPUT not in HOLDS_SLOT | REMOTE_MAY_BE_LIVE | TASK_MAY_EXIST
    assert steps_from(S.WAITING_FOR_INPUT) == []  # nothing is sent while it waits


def test_the_final_and_live_sets_partition_the_states_and_the_lua_reads_the_same_table() -> None:
    assert FINAL_STATES | LIVE_STATES == set(JobState) and not FINAL_STATES & LIVE_STATES
    assert REMOTE_MAY_BE_LIVE <= LIVE_STATES
    assert FAIL.sources == CANCEL.sources == LIVE_STATES
    assert FINAL_STATES_LUA == "{canceled=true, done=true, failed=true}"
    assert f"local finals = {FINAL_STATES_LUA}" in CAS
    assert f"local finals = {FINAL_STATES_LUA}" in gated_read._SCRIPT  # the webhook receiver's read


def test_an_undeclared_transition_or_from_state_is_refused() -> None:
    forged = dataclasses.replace(SUBMIT_ACCEPTED, sources=frozenset(JobState))
    with pytest.raises(ValueError, match="undeclared transition"):
        check(forged)
    with pytest.raises(ValueError, match="undeclared transition"):
        check(Transition("leap", frozenset({S.QUEUED}), S.DONE, {}, {}, None))
    with pytest.raises(ValueError, match="back_in_time does not start from running"):
        check(BACK_IN_TIME, {S.RUNNING})
    assert check(BACK_IN_TIME, {S.QUEUED}) == {S.QUEUED}
    assert check(FAIL) == LIVE_STATES


class _RecordingRedis:
    """Just enough of a Redis client for the store to hand its compare-and-set over."""

    def __init__(self) -> None:
        self.calls: list[list[Any]] = []

    def register_script(self, script: str) -> Any:
        def run(*, keys: list[str], args: list[Any]) -> list[Any]:
            self.calls.append(args)
            return [1, b"submitting"]

        return run


def test_the_store_applies_only_declared_transitions_with_their_own_fields() -> None:
    client = _RecordingRedis()
    store = JobStore(client)  # type: ignore[arg-type]
    applied, found = store.apply("rdj_1", SUBMIT_ACCEPTED, set={"remote_task_id": "t1"})
    assert (applied, found) == (True, S.SUBMITTING)
    states, to, set_json = client.calls[0][0], client.calls[0][1], client.calls[0][7]
    assert (states, to) == ("submitting", "submitted")
    assert set_json == '{"billing": "billed", "remote_task_id": "t1"}'
    with pytest.raises(ValueError, match="undeclared"):
        store.apply("rdj_1", dataclasses.replace(CANCEL, to=S.DONE))
    with pytest.raises(ValueError, match="a call may not change it"):
        store.apply("rdj_1", SUBMIT_ACCEPTED, set={"billing": "none"})
    assert len(client.calls) == 1  # nothing refused reached Redis


def _calls(path: Path) -> list[ast.Call]:
    tree = ast.parse(path.read_text(), str(path))
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)]


def _attr(call: ast.Call) -> str | None:
    return call.func.attr if isinstance(call.func, ast.Attribute) else None


def test_every_call_site_names_a_declared_transition_and_none_moves_a_state_otherwise() -> None:
    declared = {name for name in transitions.__all__ if name.isupper()} - {"MOVES", "TRANSITIONS"}
    assert declared == {t.name.upper() for t in TRANSITIONS.values()}
    sources = [p for d in ("worker", "tasks", "config") for p in (ROOT / d).rglob("*.py")]
    applied = 0
    for path in sources:
        for call in _calls(path):
            name, where = _attr(call), f"{path.relative_to(ROOT)}:{call.lineno}"
            assert name != "change", f"{where}: the store's change is private"
            if name == "_change":
                assert path.name == "store.py", f"{where}: only the store runs its CAS"
            if name == "update_fields":
                assert all(k.arg != "to" for k in call.keywords), f"{where}: moves a state"
            if name == "apply" and len(call.args) == 2:
                arg = call.args[1]
                label = arg.id if isinstance(arg, ast.Name) else ast.unparse(arg)
                ok = label in declared or label in {"transition", "adopt"}
                assert ok, f"{where}: {label} is not a declared transition"
                applied += 1
    assert applied >= 20  # the scan found the call sites
