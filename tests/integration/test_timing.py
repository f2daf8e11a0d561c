"""Learning generation times: the first poll converges on the real duration from both sides."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config.settings import load_settings
from simulator.testing import SimulatorProcess
from tests.pipeline_helpers import RecordingEngine, drive, make_engine, make_job
from worker.job.timing import Timing, first_poll_delay_for, next_poll_delay, sample_from

MODEL = "doubao-seedance-2-0-fast-260128"


@pytest.fixture
def engine(redis_url: str, sim: SimulatorProcess, tmp_path: Path) -> Iterator[RecordingEngine]:
    settings = load_settings(
        redis_url=redis_url, api_key="sk-test-timing", base_url=sim.url, allow_local_urls=True,
        output_dir=tmp_path, poll_interval_min=0.05, poll_interval_max=0.2,
    )  # fmt: skip
    eng = make_engine(settings)
    yield eng
    eng.close()


def test_the_learned_time_falls_when_first_polls_find_the_clip_already_done(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    sim.configure(gen_time_mean=0.3)
    engine.timing.record(MODEL, 5, 1.5)  # a stale, too-high estimate
    for _ in range(6):
        drive(engine, make_job(engine), cap=2.0)
    learned = engine.timing.expected(MODEL, 5)
    assert learned < 1.5 * 0.8


def test_the_learned_time_rises_when_first_polls_come_too_early(
    engine: RecordingEngine, sim: SimulatorProcess
) -> None:
    sim.configure(gen_time_mean=0.8)
    engine.timing.record(MODEL, 5, 0.2)  # a too-low estimate: every first poll misses
    for _ in range(4):
        drive(engine, make_job(engine), cap=2.0)
    assert engine.timing.expected(MODEL, 5) > 0.4


def _round(timing: Timing, truths: list[float]) -> list[tuple[float, int]]:
    """Run one round of concurrent jobs (one per true time) through the schedule.

    Every job starts with the estimate as the round begins, as jobs submitted together do;
    each records its sample when its poll finds it done. Returns (first poll, polls).
    """
    estimate = timing.estimate(MODEL, 5)
    seen = []
    for truth in truths:
        at = first_poll_delay_for(estimate, minimum=0.1)
        first, polls, last_miss = at, 1, None
        while at < truth:
            last_miss = at
            at += next_poll_delay(elapsed=at, estimate=estimate, minimum=0.1, maximum=1e9)
            polls += 1
        seen.append((first, polls))
        sample, bracketed = sample_from(hit=at, last_miss=last_miss, estimate=estimate)
        timing.record(MODEL, 5, sample, bracketed=bracketed)
    return seen


TRUTHS = [90 * (0.95 + 0.01 * i) for i in range(10)]  # cap 10, generation 90 s +/- 5 %


def test_a_prior_ten_times_too_high_is_caught_by_the_third_round(redis_client: Any) -> None:
    timing = Timing(redis_client)
    timing.record(MODEL, 5, 900.0)  # one stale observation, ten times the real time
    redis_client.hset("rd:timing:n", f"{MODEL}:5", 0)  # ... held as a prior only
    rounds = [_round(timing, TRUTHS) for _ in range(3)]
    for (first, _), truth in zip(rounds[2], TRUTHS, strict=True):
        assert first <= 1.5 * truth


def test_a_prior_three_times_too_low_costs_at_most_three_polls_after_the_first_round(
    redis_client: Any,
) -> None:
    timing = Timing(redis_client)
    timing.record(MODEL, 5, 30.0)
    redis_client.hset("rd:timing:n", f"{MODEL}:5", 0)
    first = _round(timing, TRUTHS)
    later = [polls for _ in range(3) for _, polls in _round(timing, TRUTHS)]
    assert max(polls for _, polls in first) > 3  # the first round pays for the bad prior
    assert sum(later) / len(later) <= 3  # later ones do not
    assert max(later) <= 4


def test_relaydance_timing_shows_what_the_fleet_learned(engine: RecordingEngine) -> None:
    from click.testing import CliRunner

    from worker.cli.main import main
    from worker.job import engine as engine_module

    engine.timing.record(MODEL, 5, 80.0)
    engine.timing.record(MODEL, 5, 100.0, bracketed=True)
    engine_module._engine = engine  # the CLI reads this process's engine
    try:
        out = CliRunner().invoke(main, ["timing", "--json"]).stdout  # stderr names the Redis
    finally:
        engine_module._engine = None
    (row,) = [json.loads(line) for line in out.splitlines()]
    assert (row["model"], row["seconds"], row["observations"]) == (MODEL, 5, 2)
    assert row["expected_s"] == 90.0 and row["deviation_s"] == 10.0
