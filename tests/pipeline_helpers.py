"""Drive jobs through the pipeline steps in this process, as a worker would."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from config.settings import Settings
from worker.job import pipeline
from worker.job.advance import plan_for
from worker.job.engine import Engine
from worker.job.record import Job
from worker.render.validation import validate_request

STEPS: dict[str, Callable[..., pipeline.Outcome]] = {
    "prepare": pipeline.prepare,
    "submit": pipeline.submit,
    "poll": pipeline.poll,
    "download": pipeline.download,
}
STEP_TASKS = {f"relaydance.{step}" for step in STEPS}


class RecordingEngine(Engine):
    """An engine whose task sends are recorded instead of going to a broker."""

    sent: list[tuple[str, tuple[Any, ...], float | None]]

    def send(self, name: str, *args: Any, countdown: float | None = None, **_: Any) -> None:
        self.sent.append((name, args, countdown))


E = TypeVar("E", bound=RecordingEngine)


def make_engine(settings: Settings, cls: type[E] = RecordingEngine) -> E:  # type: ignore[assignment]
    engine = cls.__new__(cls)
    base = Engine.from_settings(settings)
    engine.__dict__.update(base.__dict__)
    engine.bind_limits()
    engine.sent = []
    return engine


def make_job(
    engine: Engine, *, key: str = "default", on_done: str | None = None, **fields: Any
) -> str:
    """Validate and record a job, as enqueue_render does, without sending a message."""
    request = validate_request(
        {"model": "doubao-seedance-2-0-fast-260128", "prompt": "a boat", **fields}
    )
    return engine.store.create_render(request, alias=key, on_done=on_done)


def run_step(engine: Engine, step: str, job_id: str, **kwargs: Any) -> pipeline.Outcome:
    return STEPS[step](engine, job_id, **kwargs)


def chain_plan(engine: Engine, job: Job) -> list[tuple[str, dict[str, Any]]]:
    """The steps, with their arguments, that would take ``job`` to its end from its state:
    the first as :func:`worker.job.advance.advance` would send it, each next one as the
    step before it would."""
    plan: list[tuple[str, dict[str, Any]]] = []
    for step in plan_for(job):
        kwargs: dict[str, Any] = {"seq": job.seq}
        if step == "poll":
            kwargs["n"] = job.poll_count
        plan.append((step, kwargs))
    return plan


def sent_steps(engine: RecordingEngine, job_id: str) -> list[tuple[str, tuple[Any, ...]]]:
    """The steps of ``job_id`` the engine sent (a job moved on), taken off ``sent``."""
    steps = [s for s in engine.sent if s[0] in STEP_TASKS and s[1][:1] == (job_id,)]
    for entry in steps:
        engine.sent.remove(entry)
    return [(name.removeprefix("relaydance."), args) for name, args, _ in steps]


def _run_plan(
    engine: RecordingEngine, job_id: str, plan: list[tuple[str, dict[str, Any]]], *,
    calls: int, max_calls: int, cap: float,
) -> tuple[int, bool]:  # fmt: skip
    """Run the plan's steps in order, each until it stops asking to run again (countdowns
    capped at ``cap``); the step calls made so far, and whether a step said stop."""
    for step, planned in plan:
        kwargs = dict(planned)
        while calls < max_calls:
            calls += 1
            outcome = run_step(engine, step, job_id, **kwargs)
            if outcome.action == "again":
                time.sleep(min(outcome.countdown, cap))
                kwargs.update(outcome.kwargs)
                continue
            if outcome.action == "stop":
                return calls, True
            break
    return calls, False


def drive(
    engine: RecordingEngine,
    job_id: str,
    *,
    max_calls: int = 400,
    cap: float = 0.5,
    settle: bool = True,
) -> Job:
    """Run the job's remaining steps, following outcomes and countdowns (capped) and
    going on when the engine sent one of the job's steps; returns the final record.

    A job still moving after ``max_calls`` step calls fails the test, unless ``settle`` is
    False: then its record is returned as it stands (a job that waits out an outage)."""
    calls = 0
    while calls < max_calls:
        job = engine.store.get(job_id)
        assert job is not None
        if job.is_final:
            return job
        plan = chain_plan(engine, job)
        if not plan:
            return job  # a state no chain moves (submit_unknown): the operator's turn
        calls, stopped = _run_plan(engine, job_id, plan, calls=calls, max_calls=max_calls, cap=cap)
        resumes = sent_steps(engine, job_id)
        job = engine.store.get(job_id)
        assert job is not None
        if job.is_final:
            return job
        if stopped and not resumes and not any(s[0] == "relaydance.grant" for s in engine.sent):
            return job
        engine.sent[:] = [s for s in engine.sent if s[0] != "relaydance.grant"]
        time.sleep(0.05)
    if not settle:
        job = engine.store.get(job_id)
        assert job is not None
        return job
    raise AssertionError(f"job {job_id} did not settle in {max_calls} step calls")
