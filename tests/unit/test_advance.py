"""advance() decides a job's next step from the state table, timed from the record."""

from __future__ import annotations

import time
from typing import Any

import pytest

from worker.job.advance import advance, advance_ids, next_message
from worker.job.record import Job, JobState

S = JobState
REQUEST = {"model": "doubao-seedance-2-0-fast-260128", "prompt": "a paper boat", "seconds": 5}


def _job(state: JobState, **fields: Any) -> Job:
    fields.setdefault("request", dict(REQUEST))
    return Job(id="rdj_" + "0" * 32, state=state, alias="default", **fields)


class Sends:
    """An engine that keeps what it is asked to send, and has a job store of its own."""

    def __init__(self, *jobs: Job) -> None:
        self.sent: list[tuple[str, tuple[Any, ...], float | None]] = []
        self.store = self
        self.jobs = {job.id: job for job in jobs}

    def send(self, name: str, *args: Any, countdown: float | None = None, **_: Any) -> None:
        self.sent.append((name, args, countdown))

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def get_many(self, job_ids: list[str]) -> list[Job | None]:
        return [self.jobs.get(i) for i in job_ids]


@pytest.mark.parametrize(
    ("state", "task"),
    [
        (S.QUEUED, "relaydance.submit"),  # nothing to upload: no prepare
        (S.WAITING_FOR_SLOT, "relaydance.submit"),
        (S.SUBMITTING, "relaydance.submit"),
        (S.SUBMITTED, "relaydance.poll"),
        (S.RUNNING, "relaydance.poll"),
        (S.GENERATED, "relaydance.download"),
        (S.DOWNLOADING, "relaydance.download"),
    ],
)
def test_the_next_step_is_the_first_of_the_states_plan(state: JobState, task: str) -> None:
    message = next_message(_job(state, seq=3))
    assert message is not None and message.task == task
    assert message.args[:2] == (_job(state).id, 3)
    assert "model=doubao-seedance-2-0-fast-260128" in message.shown


@pytest.mark.parametrize("state", [S.SUBMIT_UNKNOWN, S.DONE, S.FAILED, S.CANCELED])
def test_a_final_job_or_one_for_the_operator_is_sent_nothing(state: JobState) -> None:
    engine = Sends()
    assert advance(engine, _job(state)) is None  # type: ignore[arg-type]
    assert advance(engine, None) is None  # type: ignore[arg-type]
    assert engine.sent == []


def test_a_job_with_local_files_prepares_first_and_submits_after_its_prepare() -> None:
    job = _job(S.QUEUED, request={**REQUEST, "images": ["/media/a.png"]})
    assert next_message(job).task == "relaydance.prepare"  # type: ignore[union-attr]
    after = next_message(job, after="prepare")
    assert after is not None and after.task == "relaydance.submit"


def test_after_each_step_comes_the_next_and_after_the_download_nothing() -> None:
    assert next_message(_job(S.SUBMITTED), after="submit").task == "relaydance.poll"  # type: ignore[union-attr]
    assert next_message(_job(S.GENERATED), after="poll").task == "relaydance.download"  # type: ignore[union-attr]
    assert next_message(_job(S.DONE), after="download") is None


def test_a_poll_waits_for_the_recorded_due_time_and_counts_the_polls_made() -> None:
    due = time.time() + 30.0
    message = next_message(_job(S.RUNNING, seq=2, poll_count=4, next_due=due))
    assert message is not None and message.args[1:] == (2, 4, 0)
    assert message.countdown is not None and 29.0 < message.countdown <= 30.0
    overdue = next_message(_job(S.RUNNING, next_due=time.time() - 5))
    assert overdue is not None and overdue.countdown is None  # due already: at once


def test_a_step_that_goes_on_keeps_its_attempt_and_countdown() -> None:
    message = next_message(_job(S.DOWNLOADING, seq=1), attempt=2, countdown=4.0)
    assert message is not None
    assert (message.task, message.args, message.countdown) == (
        "relaydance.download", (_job(S.QUEUED).id, 1, 2), 4.0,
    )  # fmt: skip


def test_jobs_moved_on_by_id_are_read_from_their_records() -> None:
    done = Job(id="rdj_" + "1" * 32, state=S.DONE, alias="default", request=dict(REQUEST))
    engine = Sends(_job(S.WAITING_FOR_SLOT, seq=1), done)
    assert advance_ids(engine, [_job(S.QUEUED).id, done.id, "rdj_gone"]) == 1  # type: ignore[arg-type]
    assert engine.sent == [("relaydance.submit", (_job(S.QUEUED).id, 1, 0), None)]
    assert advance_ids(engine, []) == 0  # type: ignore[arg-type]
