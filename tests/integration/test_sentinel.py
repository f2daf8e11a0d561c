"""Redis Sentinel: the fleet follows a failover by itself.

A real Sentinel group (tests/sentinel_group.py: a primary, two replicas and three sentinels)
and a fleet that knows only the sentinels: worker, beat and the webhook receiver, with
this process as the producer and the CLI. The primary is SIGKILLed; the sentinels
promote a replica. Nothing is restarted: every process must still run, jobs enqueued
after the election must finish, beat must hold its lock and a worker must sweep on the
new primary.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from config.settings import SettingsError, load_settings
from simulator.testing import SimulatorProcess
from tests.fleet import Fleet, point_this_process_at, wait_until, webhook_env
from tests.sentinel_group import MASTER, SentinelGroup
from worker.cli.main import main
from worker.infra.redis_server import free_port
from worker.job.engine import get_engine
from worker.job.record import JobState
from worker.job.sweeper import LAST_SWEEP_KEY

pytestmark = pytest.mark.integration

MODEL = "doubao-seedance-2-0-fast-260128"


def test_a_sentinel_url_needs_the_master_name() -> None:
    with pytest.raises(SettingsError, match="RELAYDANCE_REDIS_SENTINEL_MASTER"):
        load_settings(redis_url="sentinel://127.0.0.1:26379/0")


def _assert_doctor_sees_the_group() -> None:
    doctor = CliRunner().invoke(main, ["doctor"])
    assert f"sentinel master {MASTER} via 127.0.0.1:" in doctor.output
    assert "2 replica(s) connected to the primary" in doctor.output, doctor.output
    assert "claims wait for 1 of 2 replica(s) before their POST" in doctor.output


def _assert_the_cli_says_redis_is_unreachable() -> None:
    """During the election the CLI says so plainly (exit 3: cannot tell), no traceback."""
    during = CliRunner().invoke(main, ["limits"])
    assert during.exit_code == 3, during.output
    assert f"error: Redis at sentinel master {MASTER} via 127.0.0.1:" in during.output
    assert "is unreachable" in during.output and "Traceback" not in during.output


@pytest.mark.timeout(240)
def test_the_fleet_follows_a_failover_by_itself(
    sentinel_group: SentinelGroup, sim: SimulatorProcess, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from redbeat.schedulers import ensure_conf

    from tasks import enqueue_render, get_job, wait
    from worker.infra.celery_app import app

    sim.configure(webhooks=True, gen_time_mean=1.0, webhook_retry_base=1.0)
    web_port = free_port()
    env = webhook_env(sentinel_group.url, sim.url, web_port, tmp_path / "renders",
                      key="sk-test-sentinel", secret="sentinel-webhook-secret-3E_RYAgA1pKLvvLyOGQ_Oam6A3n6PsRg")  # fmt: skip
    env |= {"RELAYDANCE_REDIS_SENTINEL_MASTER": MASTER, "RELAYDANCE_SWEEP_INTERVAL_SECONDS": "1",
            "RELAYDANCE_SWEEP_GRACE_SECONDS": "2", "RELAYDANCE_STEP_GRACE_SECONDS": "5",
            "RELAYDANCE_HTTP_CALL_DEADLINE": "5"}  # fmt: skip
    point_this_process_at(env, monkeypatch)
    (tmp_path / "logs").mkdir()
    fleet = Fleet(env, tmp_path / "logs", concurrency=4, beat=True, web=True)
    lock_key = ensure_conf(app).lock_key
    try:
        assert get_engine().redis.connection_pool.__class__.__name__ == "SentinelConnectionPool"
        fleet.start()
        first = wait(enqueue_render({"model": MODEL, "prompt": "before the failover"}), timeout=60)
        assert first.state is JobState.DONE, fleet.logs()
        _assert_doctor_sees_the_group()

        sentinel_group.kill_primary()
        _assert_the_cli_says_redis_is_unreachable()
        sentinel_group.wait_for_failover()
        promoted = time.time()
        new_primary = sentinel_group.new_primary_client()
        after = [enqueue_render({"model": MODEL, "prompt": f"after the failover {n}"})
                 for n in range(3)]  # fmt: skip
        done = wait_until(lambda: all(get_job(j).state is JobState.DONE for j in after),
                          timeout=90, interval=0.5)  # fmt: skip
        assert done, [get_job(j).state for j in after]
        assert wait_until(lambda: float(new_primary.get(LAST_SWEEP_KEY) or 0) > promoted,
                          timeout=20)  # fmt: skip
        assert wait_until(lambda: new_primary.get(lock_key), timeout=30), fleet.logs()
        healthz = httpx.get(f"http://127.0.0.1:{web_port}/healthz", timeout=5)
        assert healthz.status_code == 200  # the receiver reads the new primary
        for proc in (fleet.worker, fleet.beat, fleet.receiver):
            assert proc is not None and proc.poll() is None, fleet.logs()
    finally:
        fleet.stop()
    assert "beat raised exception" not in fleet.log_text()
    assert "MasterNotFoundError" not in "".join(fleet.log_lines("CRITICAL"))
