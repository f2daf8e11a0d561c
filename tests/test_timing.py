"""Learning generation times: the first poll converges on the real duration from both sides."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from config.settings import load_settings
from simulator.testing import SimulatorProcess
from tests.pipeline_helpers import RecordingEngine, drive, make_engine, make_job
from worker.timing import next_poll_delay

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


def test_the_first_poll_waits_for_the_expected_time_and_later_polls_grow_to_the_cap() -> None:
    first = next_poll_delay(polls_done=0, elapsed=0.0, expected=90, minimum=2, maximum=30)
    later = [next_poll_delay(polls_done=n, elapsed=90, expected=90, minimum=2, maximum=30)
             for n in range(1, 8)]  # fmt: skip
    assert first == 90
    assert later == sorted(later)
    assert later[0] == pytest.approx(90 / 8)
    assert later[-1] == 30
    assert (
        next_poll_delay(polls_done=2, elapsed=0, expected=90, minimum=2, maximum=30, hint=45) == 45
    )
