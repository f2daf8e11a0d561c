"""The pipeline tests' engine: recording, on the simulator over real HTTP, with short timings."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from config.settings import load_settings
from simulator.testing import SimulatorProcess
from tests.pipeline_helpers import RecordingEngine, make_engine
from worker.job.sweeper import sweep

KEY = "sk-test-pipeline-key"


def pipeline_engine(
    redis_url: str, sim: SimulatorProcess, tmp_path: Path, *, key: str = KEY, **overrides: Any
) -> Iterator[RecordingEngine]:
    """A recording engine on the simulator: short polls, two transient retries, quick
    probes (``overrides``: other settings, or these changed)."""
    settings = load_settings(**{
        "redis_url": redis_url, "api_key": key, "base_url": sim.url, "allow_local_urls": True,
        "output_dir": tmp_path / "renders", "poll_first_delay": 0.2, "poll_interval_min": 0.1,
        "poll_interval_max": 0.3, "max_transient_retries": 2, "pause_probe_seconds": 0.5,
        **overrides,
    })  # fmt: skip
    eng = make_engine(settings)
    yield eng
    eng.close()


def _sha256(path: str | None) -> str:
    assert path is not None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _probe_now(engine: RecordingEngine, job_id: str) -> None:
    """Let the pause's probe time come (pause_probe_seconds is short here), then sweep: the
    sweeper nudges the job at the head of the paused line."""
    time.sleep(0.6)
    report = sweep(engine, grace=0.0)
    assert job_id in report.probed
