"""``relaydance doctor`` against a real Redis and the simulator: each missing part failed by
name, and the receiver and the sweep passed once they run; a young fleet is "starting".

The rest of the command line's setup help (help never cut short, ``relaydance models``) is
in tests/unit/test_cli_help.py.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from werkzeug.serving import make_server

from simulator.testing import SimulatorProcess
from tests.fleet import point_this_process_at
from worker.cli.doctor import run_checks
from worker.cli.main import main
from worker.infra.redis_server import free_port
from worker.job.engine import get_engine
from worker.job.sweep_health import LOOPS_KEY
from worker.job.sweep_loop import run_sweep
from worker.job.sweeper import LAST_SWEEP_KEY


@pytest.fixture
def doctor_env(
    redis_url: str, sim: SimulatorProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    env = {
        "REDIS_URL": redis_url,
        "RELAYDANCE_API_KEY": "sk-test-doctor",
        "RELAYDANCE_BASE_URL": sim.url,
        "RELAYDANCE_OUTPUT_DIR": str(tmp_path / "renders"),
        "RELAYDANCE_WEBHOOK_BASE_URL": f"http://127.0.0.1:{free_port()}/hooks",  # no one there
        "RELAYDANCE_WEBHOOK_SECRET": "test-doctor-secret-6IoRNMEhz1LTm7oxebztKLpxcwQMSEVN",
    }
    point_this_process_at(env, monkeypatch)
    return env


def test_doctor_fails_each_missing_part_by_name_and_exits_1(doctor_env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 1
    lines = {line.split()[1]: line for line in result.output.splitlines() if line[:4].strip()}
    assert lines["redis"].startswith("PASS") and "(REDIS_URL)" in lines["redis"]
    assert lines["keys"].startswith("PASS") and "sk-test-doctor" not in result.output
    assert lines["provider[default]"].startswith("PASS")
    assert (
        lines["receiver"].startswith("FAIL") and "/hooks/healthz unreachable" in lines["receiver"]
    )
    assert lines["output"].startswith("PASS")
    assert lines["sweep"].startswith("FAIL") and "no worker runs the sweep" in lines["sweep"]
    assert lines["beat"].startswith("SKIP") and "beat is not needed" in lines["beat"]
    assert lines["workers"].startswith("FAIL")
    # The session's redis-server keeps nothing across a restart: said, with the fix.
    assert lines["persistence"].startswith("FAIL") and "appendonly yes" in lines["persistence"]
    assert lines["eviction"].startswith("PASS")


def test_doctor_passes_the_receiver_and_beat_once_they_run(
    doctor_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from flask import Flask

    from worker.web.integrations.flask import relaydance_blueprint

    app = Flask(__name__)
    app.register_blueprint(relaydance_blueprint(url_prefix="/hooks"))
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        point_this_process_at(
            {**doctor_env, "RELAYDANCE_WEBHOOK_BASE_URL": f"http://127.0.0.1:{port}/hooks"},
            monkeypatch,
        )
        run_sweep(get_engine())  # what a worker runs every RELAYDANCE_SWEEP_INTERVAL_SECONDS
        checks = {c.name: c for c in run_checks(ping_timeout=0.2)}
    finally:
        server.shutdown()
    assert checks["receiver"].status == "pass", checks["receiver"].detail
    assert checks["sweep"].status == "pass" and "ago" in checks["sweep"].detail


def test_doctor_says_starting_for_a_fleet_younger_than_one_sweep_interval(
    doctor_env: dict[str, str],
) -> None:
    engine = get_engine()
    now = time.time()
    engine.redis.set(LAST_SWEEP_KEY, repr(now - 86_400))  # yesterday's fleet
    engine.redis.zadd(LOOPS_KEY, {f"w1@host|{now - 2!r}": now})  # a worker started 2 s ago
    checks = {c.name: c for c in run_checks(ping_timeout=0.2)}
    assert checks["sweep"].status == "warn"
    assert re.match(r"starting: the workers started \d+ s ago", checks["sweep"].detail)


def test_a_beat_with_schedules_to_run_is_checked_by_its_lock(doctor_env: dict[str, str]) -> None:
    from redbeat.schedulers import ensure_conf

    from worker.infra.celery_app import app

    conf = ensure_conf(app)
    engine = get_engine()
    engine.redis.zadd(conf.schedule_key, {"redbeat:relaydance-batch:nightly": time.time()})
    checks = {c.name: c for c in run_checks(ping_timeout=0.2)}
    assert checks["beat"].status == "fail" and "1 schedule(s) but no beat runs them" in (
        checks["beat"].detail
    )
    engine.redis.set(conf.lock_key, "a-beat-token", px=5000)
    checks = {c.name: c for c in run_checks(ping_timeout=0.2)}
    assert checks["beat"].status == "pass" and "beat holds its lock" in checks["beat"].detail
