"""A real fleet for integration tests: Celery worker and beat as child processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from config.settings import get_settings
from worker.engine import reset_engine


def fleet_env(*, redis_url: str, sim_url: str, output_dir: Path, **extra: str) -> dict[str, str]:
    """Environment of a worker that renders against the simulator into ``output_dir``."""
    env = {
        "REDIS_URL": redis_url,
        "RELAYDANCE_API_KEY": "sk-test-fleet-key",
        "RELAYDANCE_BASE_URL": sim_url,
        "RELAYDANCE_ALLOW_LOCAL_URLS": "true",
        "RELAYDANCE_OUTPUT_DIR": str(output_dir),
        "RELAYDANCE_POLL_FIRST_DELAY": "0.3",
        "RELAYDANCE_POLL_INTERVAL_MIN": "0.2",
        "RELAYDANCE_POLL_INTERVAL_MAX": "0.5",
        "RELAYDANCE_SWEEP_INTERVAL_SECONDS": "1",
        "RELAYDANCE_SWEEP_GRACE_SECONDS": "2",
    }
    env.update(extra)
    return env


@contextmanager
def use_env(env: Mapping[str, str]) -> Iterator[None]:
    """Point this process's settings (and the producer API) at ``env`` for a while."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    get_settings.cache_clear()
    reset_engine()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_settings.cache_clear()
        reset_engine()


class Fleet:
    """A Celery worker (and optionally beat) started with the given environment."""

    def __init__(self, env: dict[str, str], log_dir: Path, *, pool: str = "threads",
                 concurrency: int = 8, beat: bool = False) -> None:  # fmt: skip
        self.env = env  # read at each spawn, so a test may change it before starting
        self.log_dir = log_dir
        self.pool = pool
        self.concurrency = concurrency
        self.with_beat = beat
        self.worker: subprocess.Popen[bytes] | None = None
        self.beat: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def _spawn(self, args: list[str], name: str) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{name}-{self.starts}.log").open("wb")
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker", *args],
            env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def start_worker(self) -> None:
        self.starts += 1
        self.worker = self._spawn(
            ["worker", "--pool", self.pool, "--concurrency", str(self.concurrency),
             "--loglevel", "INFO", "--without-gossip", "--without-mingle",
             "--hostname", f"test{self.starts}-{os.getpid()}@%h"],
            "worker",
        )  # fmt: skip

    def start(self) -> Fleet:
        self.start_worker()
        if self.with_beat:
            schedule = self.log_dir / "beat-schedule"
            self.beat = self._spawn(
                ["beat", "--loglevel", "INFO", "--schedule", str(schedule)], "beat"
            )
        return self

    def kill_worker(self) -> None:
        """SIGKILL the worker and every process it started: no warm shutdown, no acks."""
        assert self.worker is not None
        os.killpg(self.worker.pid, signal.SIGKILL)
        self.worker.wait(timeout=10)

    def stop(self) -> None:
        for proc in (self.worker, self.beat):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in (self.worker, self.beat):
            if proc is None:
                continue
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-4000:] for p in sorted(self.log_dir.glob("*.log"))
        )


def wait_until(predicate, *, timeout: float, interval: float = 0.05) -> bool:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
