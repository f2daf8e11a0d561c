"""A POST's reply is held in the worker while Redis is away, never lost to a restart."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import redis

from worker.job import submit
from worker.job.step import NEXT, Outcome

JOB = SimpleNamespace(id="rdj_held")


def test_the_task_id_is_written_once_redis_answers_again(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def record() -> Outcome:
        calls.append("task_1")
        if len(calls) < 3:
            raise redis.ConnectionError("Connection refused")
        return NEXT

    slept: list[float] = []
    monkeypatch.setattr(submit.time, "sleep", slept.append)
    outcome = submit._hold_reply(JOB, record, what="task task_1")  # type: ignore[arg-type]
    assert outcome is NEXT
    assert calls == ["task_1"] * 3
    assert slept == [0.2, 0.4]


def test_it_gives_up_after_the_hold_and_other_errors_are_not_held(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def record() -> Outcome:
        raise redis.ConnectionError("Connection refused")

    monkeypatch.setattr(submit.time, "sleep", lambda seconds: None)
    with pytest.raises(redis.ConnectionError):
        submit._hold_reply(JOB, record, what="task t")  # type: ignore[arg-type]

    def broken() -> Outcome:
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError, match="a bug"):
        submit._hold_reply(JOB, broken, what="task t")  # type: ignore[arg-type]
