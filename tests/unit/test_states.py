"""The job's state machine, declared once, agrees with itself and is enforced by the store."""

from __future__ import annotations

import pytest

from worker.job.states import (
    FINAL_STATES,
    PLAN,
    STEP_STATES,
    JobKind,
    JobState,
    steps_from,
)
from worker.job.transitions import BACK_IN_TIME, FAIL, MOVES, SUBMIT_AMBIGUOUS, check

S = JobState


def test_every_live_state_has_its_plan_and_its_first_step_acts_in_it() -> None:
    for state, steps in PLAN.items():
        assert state not in FINAL_STATES
        assert state in STEP_STATES[steps[0]], f"{steps[0]} does not act in {state}"
    # The operator's, and a storyboard's clip waiting for its stills: no step acts in them.
    assert set(PLAN) | {S.SUBMIT_UNKNOWN, S.WAITING_FOR_INPUT} | FINAL_STATES == set(JobState)


def test_moves_go_forward_only() -> None:
    order = list(JobState)
    for state, targets in MOVES.items():
        for target in targets:
            back_in_line = target is S.WAITING_FOR_SLOT  # a 429, or an operator's resubmit
            assert back_in_line or order.index(target) > order.index(state), (state, target)


def test_prepare_is_skipped_without_local_files() -> None:
    assert steps_from(S.QUEUED, uploads=False) == ["submit", "poll", "download"]
    assert steps_from(S.QUEUED) == ["prepare", "submit", "poll", "download"]
    assert steps_from(S.DOWNLOADING) == ["download"]
    assert steps_from(S.SUBMIT_UNKNOWN) == [] and steps_from(S.DONE) == []


def test_an_image_job_never_polls_nor_prepares() -> None:
    image = JobKind.IMAGE
    assert steps_from(S.QUEUED, kind=image) == ["submit", "download"]
    assert steps_from(S.SUBMITTING, kind=image) == ["submit", "download"]
    assert steps_from(S.GENERATED, kind=image) == ["download"]
    assert steps_from(S.SUBMITTED, kind=image) == []  # never there: its reply holds the images


def test_a_move_the_table_does_not_allow_is_refused() -> None:
    assert S.SUBMITTED not in MOVES[S.RUNNING]
    with pytest.raises(ValueError, match="back_in_time does not start from running"):
        check(BACK_IN_TIME, {S.RUNNING})
    check(FAIL, {S.RUNNING})  # any live job may fail or be canceled
    check(SUBMIT_AMBIGUOUS, {S.SUBMITTING})
