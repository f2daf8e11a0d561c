"""A real fleet for integration tests: Celery worker and beat as child processes.

No process supervisor: nothing here starts a process again after it died, so a test sees
the fleet exactly as it survives (or not) a fault.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis

from config.settings import get_settings
from worker.job.engine import reset_engine

ROOT = Path(__file__).resolve().parent.parent


def fleet_env(*, redis_url: str, sim_url: str, output_dir: Path, **extra: str) -> dict[str, str]:
    """Environment of a worker that renders against the simulator into ``output_dir``."""
    env = {
        "REDIS_URL": redis_url,
        "RELAYDANCE_API_KEY": "sk-test-fleet-key",
        "RELAYDANCE_BASE_URL": sim_url,
        "RELAYDANCE_ALLOW_LOCAL_URLS": "true",
        "RELAYDANCE_OUTPUT_DIR": str(output_dir),
        "RELAYDANCE_MEDIA_DIRS": tempfile.gettempdir(),  # where tests keep media files
        "RELAYDANCE_METRICS_PORT": "0",  # no listener on the host's 9108 from a test fleet
        "RELAYDANCE_POLL_FIRST_DELAY": "0.3",
        "RELAYDANCE_POLL_INTERVAL_MIN": "0.2",
        "RELAYDANCE_POLL_INTERVAL_MAX": "0.5",
        "RELAYDANCE_SWEEP_INTERVAL_SECONDS": "1",
        "RELAYDANCE_SWEEP_GRACE_SECONDS": "2",
        # A fleet on a test clock: a killed worker's step is taken over within seconds.
        "RELAYDANCE_HTTP_CALL_DEADLINE": "5",
        "RELAYDANCE_STEP_GRACE_SECONDS": "5",
    }
    env.update(extra)
    return env


def webhook_env(
    redis_url: str, sim_url: str, web_port: int, output_dir: Path, *, key: str, secret: str
) -> dict[str, str]:
    """A fleet in webhook mode: the receiver on ``web_port``, a late (1.5 s) safety poll."""
    return {
        "REDIS_URL": redis_url,
        "RELAYDANCE_API_KEY": key,
        "RELAYDANCE_BASE_URL": sim_url,
        "RELAYDANCE_ALLOW_LOCAL_URLS": "true",
        "RELAYDANCE_WEBHOOK_BASE_URL": f"http://127.0.0.1:{web_port}/hooks",
        "RELAYDANCE_WEBHOOK_SECRET": secret,
        # First (safety) poll 1.5 s after submit, or the expected duration if later.
        "RELAYDANCE_WEBHOOK_SAFETY_POLL_SECONDS": "1.5",
        "RELAYDANCE_POLL_INTERVAL_MIN": "0.3",
        "RELAYDANCE_POLL_INTERVAL_MAX": "1",
        "RELAYDANCE_OUTPUT_DIR": str(output_dir),
        "RELAYDANCE_MEDIA_DIRS": tempfile.gettempdir(),
        "RELAYDANCE_METRICS_PORT": "0",
    }


def point_this_process_at(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Make settings, the engine and the Celery app of this process use ``env``."""
    for name in [n for n in os.environ if n.startswith("RELAYDANCE_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    _rebind()


def _rebind() -> None:
    """Settings, engine and the Celery producer of this process, from the environment now."""
    from config.celery import celery_config
    from worker.infra.celery_app import app

    get_settings.cache_clear()
    reset_engine()
    app.conf.update(celery_config(get_settings()))
    # Drop the broker pool and result backend an earlier test may have bound to another Redis.
    app._pool = None
    app.amqp._producer_pool = None
    app._backend_cache = None
    app._local = threading.local()


@contextmanager
def use_env(env: Mapping[str, str]) -> Iterator[None]:
    """Point this process's settings (and the producer API) at ``env`` for a while."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    _rebind()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _rebind()


class Fleet:
    """A Celery worker (and optionally beat) started with the given environment."""

    def __init__(self, env: dict[str, str], log_dir: Path, *, pool: str = "threads",
                 concurrency: int = 8, beat: bool = False, includes: Sequence[str] = (),
                 web: bool = False, name: str = "test") -> None:  # fmt: skip
        self.name = name  # the worker's node name prefix: two fleets may share one broker
        self.env = env  # read at each spawn, so a test may change it before starting
        self.includes = list(includes)  # extra task modules (an example app's on_done task)
        self.web = web  # also run the webhook receiver on RELAYDANCE_WEBHOOK_BASE_URL's port
        self.receiver: subprocess.Popen[bytes] | None = None
        self.log_dir = log_dir
        self.pool = pool
        self.concurrency = concurrency
        self.with_beat = beat
        self.worker: subprocess.Popen[bytes] | None = None
        self.beat: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.beat_starts = 0

    def _spawn(self, args: list[str], name: str) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{name}-{self.starts}.log").open("wb")
        # Only the test's RELAYDANCE_* settings; the repository is importable (examples).
        env = {k: v for k, v in os.environ.items() if not k.startswith("RELAYDANCE_")}
        env.update(self.env)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        return subprocess.Popen(
            args, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def start_worker(self) -> None:
        """Start a worker and wait until it says it is ready."""
        self.starts += 1
        includes = ["--include", ",".join(self.includes)] if self.includes else []
        self.worker = self._spawn(
            [sys.executable, "-m", "celery", "-A", "worker", "worker", "--pool", self.pool,
             "--concurrency", str(self.concurrency), "--loglevel", "INFO", "--without-gossip",
             "--without-mingle", "--hostname", f"{self.name}{self.starts}-{os.getpid()}@%h",
             *includes],
            "worker",
        )  # fmt: skip
        log = self.log_dir / f"worker-{self.starts}.log"
        wait_for(lambda: " ready." in log.read_text(errors="replace"), timeout=30,
                 what=f"the worker ({log})")  # fmt: skip

    def start(self) -> Fleet:
        if self.web:
            port = urlsplit(self.env["RELAYDANCE_WEBHOOK_BASE_URL"]).port
            code = (
                f"from worker.web.app import serve; serve('127.0.0.1', {port}, log_level='warning')"
            )
            self.receiver = self._spawn([sys.executable, "-c", code], "web")
            wait_for(lambda: _answers(f"http://127.0.0.1:{port}/healthz"),
                     what="the webhook receiver")  # fmt: skip
        self.start_worker()
        if self.with_beat:
            self.start_beat()
        return self

    def start_beat(self) -> None:
        """Start beat (the users' schedules; workers sweep by themselves)."""
        schedule = self.log_dir / "beat-schedule"
        self.beat = self._spawn(
            [sys.executable, "-m", "celery", "-A", "worker", "beat", "--loglevel", "INFO",
             "--schedule", str(schedule)],
            f"beat{self.beat_starts}",
        )  # fmt: skip
        self.beat_starts += 1

    @contextmanager
    def running(self) -> Iterator[Fleet]:
        """This process pointed at the fleet's environment, the fleet started; stopped
        on the way out, whatever happened inside."""
        with use_env(self.env):
            self.start()
            try:
                yield self
            finally:
                self.stop()

    def kill_worker(self) -> None:
        """SIGKILL the worker and every process it started: no warm shutdown, no acks."""
        assert self.worker is not None
        os.killpg(self.worker.pid, signal.SIGKILL)
        self.worker.wait(timeout=10)

    def stop(self) -> None:
        for proc in (self.worker, self.beat, self.receiver):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in (self.worker, self.beat, self.receiver):
            if proc is None:
                continue
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def log_text(self) -> str:
        """Everything the fleet's processes wrote, whole."""
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("*.log")))

    def log_lines(self, needle: str) -> list[str]:
        """The log lines that contain ``needle``."""
        return [line for line in self.log_text().splitlines() if needle in line]

    def logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-4000:] for p in sorted(self.log_dir.glob("*.log"))
        )


def running_fleet(redis_url: str, sim_url: str, tmp_path: Path) -> Iterator[Fleet]:
    """A worker and beat on an emptied Redis and the simulator, this process pointed at
    them, stopped at the end (for a fixture to ``yield from``)."""
    redis.Redis.from_url(redis_url).flushall()
    env = fleet_env(redis_url=redis_url, sim_url=sim_url, output_dir=tmp_path / "renders")
    logs = tmp_path / "logs"
    logs.mkdir()
    with Fleet(env, logs, beat=True).running() as fleet:
        yield fleet


def wait_for(predicate: Callable[[], Any], *, timeout: float = 20.0, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy, and return that; else fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or predicate}")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.TransportError:
        return False


def flower_sees_a_worker(port: int, auth: tuple[str, str]) -> bool:
    """Whether Flower on ``port`` lists a worker: only then do a job's task events reach it
    (those sent before it connected are lost to it, and a loaded machine starts it late)."""
    try:
        url = f"http://127.0.0.1:{port}/api/workers?refresh=1"
        return bool(httpx.get(url, auth=auth, timeout=2).json())
    except (httpx.HTTPError, ValueError):
        return False


def start_flower(port: int, env: dict[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    """Flower on the loopback, behind a basic-auth login."""
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker", "flower", f"--port={port}",
         "--address=127.0.0.1", "--basic-auth=ops:test-pass"],
        env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def flower_lists_downloads(api: str, auth: tuple[str, str], count: int) -> bool:
    """Whether Flower's task list shows at least ``count`` downloads."""
    try:
        tasks = httpx.get(api, auth=auth, timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return False
    return sum(t.get("name") == "relaydance.download" for t in tasks.values()) >= count


def wait_until(predicate, *, timeout: float, interval: float = 0.05) -> bool:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
