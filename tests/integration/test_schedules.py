"""Schedules: stored with their beat entry, idempotent runs, the CLI, and celery-redbeat
beats (two at once, one killed) firing a schedule exactly once. The cron arithmetic and
the run's name need no Redis: they are in tests/unit/test_schedule_cron.py.

Tests without beat use database 1 of the session's redis-server, their own Celery app
(so redbeat's cached connection points there) and an engine that records messages. The
beat test runs a real worker, two beats and the simulator on database 0.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from config.settings import get_settings, load_settings
from simulator.testing import SimulatorProcess
from tests.batch_requests import FAST
from tests.fleet import wait_until
from tests.pipeline_helpers import RecordingEngine, make_engine
from tests.schedule_helpers import at, celery_app
from worker.batch import Batches, InvalidBatch, parse_records
from worker.batch.schedules import Schedules
from worker.cli.schedule import schedule
from worker.errors import InvalidRequest
from worker.infra.redis_server import RedisServer
from worker.job.engine import Engine, reset_engine

ROOT = Path(__file__).resolve().parents[2]


def requests(n: int) -> Any:
    return parse_records(
        [{"model": FAST, "prompt": f"nightly {i}", "seconds": 5} for i in range(n)]
    )


@pytest.fixture
def db1(redis_server: RedisServer) -> str:
    url = redis_server.url[: -len("/0")] + "/1"
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture
def engine(db1: str) -> Iterator[RecordingEngine]:
    fake = make_engine(load_settings(redis_url=db1, api_key="sk-test"))
    yield fake
    fake.close()


@pytest.fixture
def schedules(engine: RecordingEngine, db1: str) -> Schedules:
    return Schedules(engine, celery_app(db1))


# Adding, listing, removing, running ------------------------------------------------------


def test_adding_a_schedule_stores_its_requests_and_a_beat_entry_that_is_not_due_at_once(
    schedules: Schedules,
) -> None:
    added = schedules.add("nightly", cron="0 2 * * *", parsed=requests(3), budget=5)
    assert (added.lines, added.budget_usd, added.runs) == (3, 5.0, 0)
    now = datetime.now(UTC)
    assert added.next_run is not None
    assert now < added.next_run <= now + timedelta(days=1)
    assert added.next_run.astimezone(UTC).strftime("%H:%M") == "02:00"
    entry = schedules.redis.hgetall("redbeat:relaydance-batch:nightly")
    definition = json.loads(entry["definition"])
    assert definition["task"] == "relaydance.batch_run"
    assert definition["kwargs"] == {"schedule": "nightly"}
    assert [s.name for s in schedules.list()] == ["nightly"]


def test_a_schedule_with_invalid_lines_a_bad_cron_or_an_unknown_key_is_refused(
    schedules: Schedules,
) -> None:
    bad = parse_records([{"model": FAST, "prompt": "x", "seconds": 99}])
    with pytest.raises(InvalidBatch):
        schedules.add("bad-file", cron="0 2 * * *", parsed=bad)
    with pytest.raises(InvalidRequest):
        schedules.add("bad-cron", cron="0 2 * *", parsed=requests(1))
    with pytest.raises(InvalidRequest) as exc:
        schedules.add("bad-key", cron="0 2 * * *", parsed=requests(1), key="tenant-z")
    assert exc.value.problems[0][0] == "key"
    assert schedules.list() == []
    schedules.add("taken", cron="0 2 * * *", parsed=requests(1))
    with pytest.raises(InvalidRequest):
        schedules.add("taken", cron="0 3 * * *", parsed=requests(1))


def test_a_run_creates_its_batch_once_however_often_it_fires(
    schedules: Schedules, engine: RecordingEngine
) -> None:
    schedules.add("nightly", cron="0 2 * * *", parsed=requests(4), budget=2.0)
    fired = at("2025-03-10T02:00:01")
    results: list[str | None] = []
    threads = [
        threading.Thread(target=lambda: results.append(schedules.run("nightly", at=fired)))
        for _ in range(5)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1 and results[0] is not None
    status = Batches(engine).status(results[0])
    assert status.name == "nightly-20250310T0200Z"
    assert status.counts == {"queued": 2, "skipped_budget": 2}  # $0.70 each, cap $2
    assert len(engine.redis.keys("rd:job:*")) == 2
    assert schedules.get("nightly").runs == 5
    assert schedules.get("nightly").last_batch == results[0]
    tomorrow = schedules.run("nightly", at=at("2025-03-11T02:00:00"))
    assert tomorrow != results[0]
    assert Batches(engine).status(tomorrow or "").name == "nightly-20250311T0200Z"


def test_removing_a_schedule_deletes_its_beat_entry_and_a_late_run_does_nothing(
    schedules: Schedules,
) -> None:
    schedules.add("weekly", cron="0 4 * * 0", parsed=requests(1))
    assert schedules.remove("weekly")
    assert not schedules.redis.exists("redbeat:relaydance-batch:weekly")
    assert schedules.list() == [] and not schedules.remove("weekly")
    assert schedules.run("weekly") is None


# CLI -------------------------------------------------------------------------------------------


@pytest.fixture
def cli(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    _clean(client)
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("RELAYDANCE_API_KEY", "sk-test")
    get_settings.cache_clear()
    reset_engine()
    _point_app_at(redis_server.url)
    yield client
    _clean(client)
    get_settings.cache_clear()
    reset_engine()
    client.close()


def _point_app_at(url: str) -> None:
    """Make the CLI's Celery app (and redbeat's cached client) use ``url``."""
    from worker import app

    if app.conf.broker_url != url:
        app.conf.update(broker_url=url, result_backend=url)
        if app._pool is not None:
            app._pool.force_close_all()
            app._pool = None
        app.amqp._producer_pool = None
    app.conf.update(redbeat_redis_url=url, redbeat_redis_options={})
    for cached in ("redbeat_redis", "redbeat_conf"):
        if hasattr(app, cached):
            delattr(app, cached)


def _clean(client: redis.Redis) -> None:
    keys = [*client.scan_iter("rd:*"), *client.scan_iter("redbeat:*")]
    if keys:
        client.delete(*keys)


def test_cli_adds_lists_and_removes_a_schedule(cli: redis.Redis, tmp_path: Path) -> None:
    file = tmp_path / "nightly.csv"
    file.write_text(f"model,prompt,seconds\n{FAST},a quiet harbour,5\n{FAST},a busy market,6\n")
    runner = CliRunner()
    added = runner.invoke(schedule, ["add", "nightly", "--cron", "0 2 * * *", "--file", str(file),
                                     "--budget", "10"])  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "schedule nightly added: 2 lines" in added.stdout
    listed = json.loads(runner.invoke(schedule, ["list", "--json"]).stdout)
    assert [(s["name"], s["cron"], s["lines"], s["budget_usd"]) for s in listed] == [
        ("nightly", "0 2 * * *", 2, 10.0)
    ]
    assert runner.invoke(schedule, ["remove", "nightly"]).exit_code == 0
    assert runner.invoke(schedule, ["remove", "nightly"]).exit_code == 1
    assert "no schedules" in runner.invoke(schedule, ["list"]).stdout


def test_cli_refuses_a_schedule_whose_file_has_invalid_lines(
    cli: redis.Redis, tmp_path: Path
) -> None:
    file = tmp_path / "bad.jsonl"
    file.write_text(json.dumps({"model": FAST, "prompt": "x", "seconds": 99}) + "\n")
    result = CliRunner().invoke(
        schedule, ["add", "bad", "--cron", "0 2 * * *", "--file", str(file)]
    )
    assert result.exit_code == 2
    assert "line 1: seconds: 99 is outside" in result.stderr
    assert not cli.exists("rd:schedule:bad")


# Beat: a schedule fires once, whatever the number of beats ---------------------------------

BEAT = """
import sys
from worker import app
url, lock_timeout = sys.argv[1], int(sys.argv[2])
app.conf.update(beat_scheduler="redbeat.RedBeatScheduler", redbeat_redis_url=url,
                redbeat_lock_timeout=lock_timeout, beat_max_loop_interval=1)
app.Beat(scheduler="redbeat.RedBeatScheduler", max_interval=1, loglevel="INFO").run()
"""
LOCK_TIMEOUT = 3


def _spawn(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(args, env={**os.environ, **env}, stdout=out,
                                stderr=subprocess.STDOUT, cwd=ROOT)  # fmt: skip


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _schedules_env(redis_url: str, sim_url: str, output: Path) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "RELAYDANCE_API_KEY": "sk-test-schedules",
        "RELAYDANCE_BASE_URL": sim_url,
        "RELAYDANCE_ALLOW_LOCAL_URLS": "true",
        "RELAYDANCE_OUTPUT_DIR": str(output),
        "RELAYDANCE_POLL_FIRST_DELAY": "0.3",
        "RELAYDANCE_POLL_INTERVAL_MIN": "0.2",
        "RELAYDANCE_POLL_INTERVAL_MAX": "0.5",
        "RELAYDANCE_REQUESTS_PER_SECOND": "1000",
    }


def _spawn_worker(log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A worker that runs the batch tasks a schedule sends."""
    return _spawn(
        [sys.executable, "-m", "celery", "-A", "worker", "worker", "--pool", "threads", "-c",
         "4", "-I", "tasks.batches", "--without-gossip", "--without-mingle", "--loglevel",
         "INFO", "--hostname", f"schedules-{os.getpid()}@%h"],
        log, env,
    )  # fmt: skip


def _next_whole_minute(now: datetime) -> datetime:
    """The next whole minute at least 3 s away: time for the schedule to be written."""
    target = (now + timedelta(minutes=1)).replace(second=0, microsecond=0)
    if (target - now).total_seconds() < 3:
        target += timedelta(minutes=1)
    return target


def _acquired(log: Path) -> bool:
    return "beat: Acquired lock" in log.read_text(errors="replace")


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_a_schedule_set_a_minute_ahead_fires_once_with_two_beats_and_after_a_takeover(
    cli: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = cli.connection_pool.connection_kwargs
    redis_url = f"redis://127.0.0.1:{url['port']}/0"
    with SimulatorProcess(gen_time_mean=0.2, gen_time_jitter=0.1) as sim:
        env = _schedules_env(redis_url, sim.url, tmp_path / "renders")
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        reset_engine()
        worker = _spawn_worker(tmp_path / "worker.log", env)
        logs = [tmp_path / "beat-a.log", tmp_path / "beat-b.log"]
        beats = [
            _spawn([sys.executable, "-c", BEAT, redis_url, str(LOCK_TIMEOUT)], log, env)
            for log in logs
        ]
        try:
            assert wait_until(
                lambda: any(_acquired(log) for log in logs), timeout=60, interval=0.2
            ), logs[0].read_text()
            now = datetime.now(UTC)
            target = _next_whole_minute(now)
            engine = Engine.from_settings(get_settings())
            app = celery_app(redis_url)
            added = Schedules(engine, app).add(
                "minutely", cron=f"{target.minute} {target.hour} * * *", parsed=requests(2)
            )
            assert added.next_run == target
            expected = f"minutely-{target:%Y%m%dT%H%MZ}"
            assert wait_until(lambda: cli.exists(f"rd:batchname:{expected}"),
                              timeout=(target - now).total_seconds() + 20, interval=0.2), logs  # fmt: skip
            batch_id = cli.get(f"rd:batchname:{expected}")
            status = Batches(engine).wait(batch_id, timeout=30, interval=0.2)
            assert status.counts == {"done": 2}
            # Kill the beat holding the lock: the other takes over once the lock expires.
            holder = 0 if _acquired(logs[0]) else 1
            os.kill(beats[holder].pid, signal.SIGKILL)
            beats[holder].wait()
            assert wait_until(
                lambda: _acquired(logs[1 - holder]), timeout=LOCK_TIMEOUT + 10, interval=0.2
            )
            time.sleep(2)  # two ticks of the new beat
            assert Schedules(engine, app).get("minutely").runs == 1
            assert len(list(cli.scan_iter("rd:batchname:minutely-*"))) == 1
            assert sim.stats()["submissions"] == 2
            engine.close()
        finally:
            for proc in (*beats, worker):
                _stop(proc)
