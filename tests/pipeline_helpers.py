"""Drive jobs through the pipeline steps in this process, as a worker would."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from config.settings import Settings
from tasks.canvas import chain_for
from worker.job import pipeline
from worker.job.engine import Engine
from worker.job.record import Job
from worker.render.validation import validate_request

STEPS: dict[str, Callable[..., pipeline.Outcome]] = {
    "prepare": pipeline.prepare,
    "submit": pipeline.submit,
    "poll": pipeline.poll,
    "download": pipeline.download,
    "finish": pipeline.finish,
}


class RecordingEngine(Engine):
    """An engine whose task sends are recorded instead of going to a broker."""

    sent: list[tuple[str, tuple[Any, ...], float | None]]

    def send(self, name: str, *args: Any, countdown: float | None = None) -> None:
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
    """The steps, with their arguments, of the chain a worker would send for ``job``."""
    signature = chain_for(job)
    if signature is None:
        return []
    signatures = signature.tasks if signature.task == "celery.chain" else [signature]
    return [
        (
            str(sig.task).removeprefix("relaydance."),
            {k: v for k, v in sig.kwargs.items() if k != "job_id"},
        )
        for sig in signatures
    ]


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
    resuming when the engine asked for ``relaydance.resume``; returns the final record.

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
        resumes = [s for s in engine.sent if s[0] == "relaydance.resume" and s[1] == (job_id,)]
        for entry in resumes:
            engine.sent.remove(entry)
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
