"""/metrics: job-level figures in Prometheus text format, from the job store and limits."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from config.settings import load_settings
from simulator.testing import SimulatorProcess
from tests.pipeline_helpers import RecordingEngine, drive, make_engine, make_job
from worker.job.sweep_health import LOOPS_KEY
from worker.job.sweep_loop import run_sweep
from worker.job.sweeper import LAST_SWEEP_KEY
from worker.web.metrics import render_metrics

KEY = "sk-test-metrics-key"


@pytest.fixture
def engine(redis_url: str, sim: SimulatorProcess, tmp_path: Path) -> Iterator[RecordingEngine]:
    settings = load_settings(
        redis_url=redis_url, api_key=KEY, base_url=sim.url, allow_local_urls=True,
        output_dir=tmp_path, poll_first_delay=0.2, poll_interval_min=0.1, poll_interval_max=0.3,
    )  # fmt: skip
    eng = make_engine(settings)
    yield eng
    eng.close()


def _samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_a_stopped_sweep_shows_as_a_gauge_until_a_sweep_completes(
    engine: RecordingEngine,
) -> None:
    now = time.time()
    engine.redis.zadd(LOOPS_KEY, {f"w1@host|{now - 3600!r}": now})  # a worker up an hour
    engine.redis.set(LAST_SWEEP_KEY, repr(now - 600))  # ... whose sweeps stopped 10 m ago
    samples = _samples(render_metrics(engine))
    assert samples["relaydance_sweep_stopped"] == 1
    assert samples["relaydance_sweep_age_seconds"] == pytest.approx(600, abs=5)
    assert run_sweep(engine) is not None
    samples = _samples(render_metrics(engine))
    assert samples["relaydance_sweep_stopped"] == 0
    assert samples["relaydance_sweep_age_seconds"] < 5


def test_metrics_count_jobs_by_state_polls_and_spend(engine: RecordingEngine) -> None:
    done = drive(engine, make_job(engine, seconds=5))
    waiting = make_job(engine)
    engine.limits.acquire("default", "someone-else", limit=1)
    engine.settings = engine.settings.model_copy(update={"max_concurrency": 1})
    from tests.pipeline_helpers import run_step

    assert run_step(engine, "submit", waiting, seq=0).action == "stop"
    text = render_metrics(engine)
    samples = _samples(text)
    assert samples['relaydance_jobs{state="done"}'] == 1
    assert samples['relaydance_jobs{state="waiting_for_slot"}'] == 1
    assert samples["relaydance_jobs_active"] == 1
    assert samples['relaydance_key_jobs_waiting{key="default"}'] == 1
    assert samples['relaydance_key_slots_in_use{key="default"}'] == 1
    assert samples['relaydance_key_limit_configured{key="default"}'] == 1
    assert samples["relaydance_generated_jobs_total"] == 1
    assert samples["relaydance_polls_total"] == done.poll_count
    assert samples["relaydance_spend_usd_total"] == pytest.approx(done.cost)
    assert "# TYPE relaydance_spend_usd_total counter" in text
    assert KEY not in text


def test_the_public_receiver_serves_metrics_only_to_the_bearer_of_the_token(
    engine: RecordingEngine,
) -> None:
    from starlette.testclient import TestClient

    from worker.web.app import create_web_app

    drive(engine, make_job(engine))
    app = create_web_app(engine=lambda: engine, prefix="/hooks")
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 404  # no token configured: no route
        token = "metrics-token-123-HRX5PcAEStYhsJ5NvcFEmSYfR12kCfgZ"
        engine.settings = engine.settings.model_copy(update={"metrics_token": SecretStr(token)})
        assert client.get("/metrics").status_code == 404
        wrong = {"Authorization": f"Bearer {token[:-1]}"}
        assert client.get("/metrics", headers=wrong).status_code == 404
        response = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'relaydance_jobs{state="done"} 1.0' in response.text


def test_the_metrics_listener_binds_loopback_by_default(engine: RecordingEngine) -> None:
    import httpx

    from worker.infra.redis_server import free_port
    from worker.web.metrics import start_metrics_listener

    assert engine.settings.metrics_bind == "127.0.0.1"
    settings = engine.settings.model_copy(update={"metrics_port": free_port()})
    port = start_metrics_listener(settings, lambda: engine)
    assert port == settings.metrics_port
    answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5.0)
    assert answer.status_code == 200 and "relaydance_jobs_active 0.0" in answer.text
    off = engine.settings.model_copy(update={"metrics_port": 0})
    assert start_metrics_listener(off, lambda: engine) is None


def test_a_taken_metrics_port_is_logged_and_the_receiver_serves_on(
    engine: RecordingEngine, caplog: pytest.LogCaptureFixture
) -> None:
    import logging
    import socket

    from worker.web.metrics import start_metrics_listener

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = engine.settings.model_copy(update={"metrics_port": port})
        with caplog.at_level(logging.ERROR, logger="worker.web.metrics"):
            assert start_metrics_listener(settings, lambda: engine) is None
    assert f"127.0.0.1:{port} is not available" in caplog.text
    assert "RELAYDANCE_METRICS_PORT" in caplog.text
