"""A POST's reply is held in the worker while Redis is away, never lost to a restart."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import redis

from worker.job import submit
from worker.job.step import NEXT, Outcome

JOB = SimpleNamespace(id="rdj_held")


def test_the_task_id_is_written_once_redis_answers_again(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def record(*args: Any, task_id: str, **kwargs: Any) -> Outcome:
        calls.append(task_id)
        if len(calls) < 3:
            raise redis.ConnectionError("Connection refused")
        return NEXT

    slept: list[float] = []
    monkeypatch.setattr(submit, "record_task", record)
    monkeypatch.setattr(submit.time, "sleep", slept.append)
    outcome = submit._record_through_outage(None, JOB, 0, task_id="task_1", status="")  # type: ignore[arg-type]
    assert outcome is NEXT
    assert calls == ["task_1"] * 3
    assert slept == [0.2, 0.4]


def test_it_gives_up_after_the_hold_and_other_errors_are_not_held(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def record(*args: Any, **kwargs: Any) -> Outcome:
        raise redis.ConnectionError("Connection refused")

    monkeypatch.setattr(submit, "record_task", record)
    monkeypatch.setattr(submit.time, "sleep", lambda seconds: None)
    with pytest.raises(redis.ConnectionError):
        submit._record_through_outage(None, JOB, 0, task_id="t", status="")  # type: ignore[arg-type]

    def broken(*args: Any, **kwargs: Any) -> Outcome:
        raise ValueError("a bug, not an outage")

    monkeypatch.setattr(submit, "record_task", broken)
    with pytest.raises(ValueError, match="a bug"):
        submit._record_through_outage(None, JOB, 0, task_id="t", status="")  # type: ignore[arg-type]
