"""Batches that mix providers: a ``key`` column per line, each line checked by its own
provider's rules; and money counted at what the provider says it charged."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config.settings import get_settings, load_settings
from simulator.testing import SimulatorProcess
from tests.pipeline_helpers import RecordingEngine, drive, make_engine
from worker.batch import Batches, parse_records, parse_text, render_report
from worker.batch import batch_report as report_of
from worker.batch.plan import plan_batch
from worker.job.engine import reset_engine
from worker.job.record import JobState

RELAY = {"model": "doubao-seedance-2-0-fast-260128", "prompt": "a kite", "seconds": 5}  # $0.70
KIN = {"model": "seedance-20", "prompt": "a heron", "seconds": 5}  # 200 credits = $1.00


@pytest.fixture
def keys(sim: SimulatorProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    routes = json.dumps({
        "studio": "sk-batch-studio",
        "kin": {"key": "kin-batch-key", "provider": "kinovi", "base_url": sim.kinovi_url},
    })  # fmt: skip
    monkeypatch.setenv("RELAYDANCE_API_KEYS", routes)
    get_settings.cache_clear()
    yield routes
    get_settings.cache_clear()
    reset_engine()


@pytest.fixture
def engine(
    keys: str, redis_url: str, sim: SimulatorProcess, tmp_path: Path
) -> Iterator[RecordingEngine]:
    settings = load_settings(
        redis_url=redis_url, base_url=sim.url, api_keys=json.loads(keys), allow_local_urls=True,
        output_dir=tmp_path / "out", poll_first_delay=0.2, poll_interval_min=0.1,
        poll_interval_max=0.3,
    )  # fmt: skip
    eng = make_engine(settings)
    yield eng
    eng.close()


def test_a_key_column_checks_each_line_by_its_own_providers_rules(keys: str) -> None:
    text = (
        "key,model,prompt,seconds,upscale,mode,images\n"
        "studio,doubao-seedance-2-0-fast-260128,a kite,5,,,\n"
        "kin,seedance-20,a heron,5,4k,,\n"
        ",seedance-20,no key: the batch's --key (studio) is RelayDance,5,,,\n"
        "kin,doubao-seedance-2-0-fast-260128,a RelayDance model on Kinovi,5,,,\n"
        "kin,seedance-20,@image1 waves,5,,reference,/srv/cat.png\n"
        "nobody,seedance-20,x,5,,,\n"
    )
    parsed = parse_text(text, fmt="csv", key="studio", check_files=False)
    assert [(ln.line, ln.key) for ln in parsed.lines] == [(2, "studio"), (3, "kin")]
    assert parsed.lines[1].request.upscale == "4k"
    problems = {bad.line: dict(bad.problems) for bad in parsed.invalid}
    assert "seedance-20 is a kinovi model" in problems[4]["model"]
    assert "is not a Kinovi model" in problems[5]["model"]
    assert "Kinovi has no upload endpoint" in problems[6]["images"]
    assert "the alias given is not configured" in problems[7]["key"]
    assert "nobody" not in problems[7]["key"]  # an unknown alias may be a mistyped key


def test_the_same_request_on_two_keys_is_two_renders(keys: str) -> None:
    both = {"model": "seedance-20", "prompt": "p", "seconds": 4}
    parsed = parse_records([{**both, "key": "kin"}, {**both, "key": "kin"}, both], key="kin")
    plan = plan_batch(parsed)
    assert [(item.alias, item.lines) for item in plan.items] == [("kin", (1, 2)), (None, (3,))]


def test_a_mixed_batch_renders_each_line_at_its_provider_and_counts_the_actual_spend(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    sim.configure(billed_factor=1.5)  # Kinovi charges half as much again as its list price
    parsed = parse_records([{**RELAY, "key": "studio"}, {**KIN, "key": "kin"}], key="studio")
    batches = Batches(engine)
    sub = batches.submit(parsed, key="studio", budget=10.0)
    assert sub.committed_usd == pytest.approx(0.70 + 1.00)  # the estimates, reserved
    job_ids = [i for name, args, _ in engine.sent if name == "relaydance.resume_many"
               for i in args[0]]  # fmt: skip
    jobs = {engine.store.get(j).alias: drive(engine, j) for j in job_ids}  # type: ignore[union-attr]
    assert {alias: job.state for alias, job in jobs.items()} == {
        "studio": JobState.DONE,
        "kin": JobState.DONE,
    }
    assert jobs["kin"].actual_cost == pytest.approx(1.50)
    for job in jobs.values():  # what relaydance.batch_job_done does in a worker
        batches.job_done(job.summary())
    status = batches.status(sub.batch_id)
    assert status.done == 2
    assert status.spent_usd == pytest.approx(0.70 + 1.50)  # actual where known, else estimate
    assert status.committed_usd == pytest.approx(0.70 + 1.50)
    info, rows = report_of(batches, sub.batch_id)
    table = list(csv.DictReader(io.StringIO(render_report(info, rows, fmt="csv"))))
    assert [(r["key"], r["estimated_cost"], r["actual_cost"]) for r in table] == [
        ("studio", "0.7", ""),
        ("kin", "1.0", "1.5"),
    ]
    remote = {sim_task["dialect"] for sim_task in _remote(sim, jobs.values())}
    assert remote == {"relaydance", "kinovi"}


def test_a_kinovi_line_that_fails_gives_its_reservation_back(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    sim.configure(failure_rate=1.0)
    batches = Batches(engine)
    sub = batches.submit(parse_records([KIN], key="kin"), key="kin", budget=5.0)
    assert sub.committed_usd == pytest.approx(1.00)
    (job_id,) = [i for name, args, _ in engine.sent if name == "relaydance.resume_many"
                 for i in args[0]]  # fmt: skip
    job = drive(engine, job_id)
    assert (job.state, job.error_code, job.actual_cost) == (JobState.FAILED, "generation_failed", 0)
    status = batches.status(sub.batch_id)
    assert (status.committed_usd, status.spent_usd, status.failed) == (0.0, 0.0, 1)


def _remote(sim: SimulatorProcess, jobs: Any) -> list[dict[str, Any]]:
    import httpx

    return [httpx.get(f"{sim.root}/_sim/tasks/{job.remote_task_id}").json() for job in jobs]
