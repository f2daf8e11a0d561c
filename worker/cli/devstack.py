"""The whole fleet in the foreground for development and the demo.

An embedded redis-server when no Redis URL is configured, the local simulator when no
API key is configured, one Celery worker and beat, all child processes of this one and
stopped cleanly together. Its scratch directory (``relaydance-dev-*``: beat's schedule
file) goes with it. The embedded Redis keeps an append-only file, as a real deployment's
must, so ``relaydance doctor`` finds nothing to warn about under ``dev``.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType

from config.settings import get_settings, load_settings
from worker.infra.redis_server import RedisServer
from worker.job.engine import reset_engine

__all__ = ["DevStack"]

logger = logging.getLogger(__name__)

SIMULATOR_KEY = "sk-local-simulator"  # the simulator accepts any bearer token
DEFAULT_POOL = "threads"
DEFAULT_CONCURRENCY = 8


class DevStack:
    """Start and stop Redis (if needed), the simulator (if needed), a worker and beat."""

    def __init__(
        self,
        *,
        pool: str = DEFAULT_POOL,
        concurrency: int = DEFAULT_CONCURRENCY,
        beat: bool = True,
        gen_time: float = 3.0,
        loglevel: str = "INFO",
        log_file: Path | None = None,
    ) -> None:
        self.pool = pool
        self.concurrency = concurrency
        self.beat = beat
        self.gen_time = gen_time
        self.loglevel = loglevel
        self.log_file = log_file  # None: children write to this terminal
        self.redis: RedisServer | None = None
        self.simulator: object | None = None
        self.notes: list[str] = []
        self._procs: list[subprocess.Popen[bytes]] = []
        self._saved_env: dict[str, str | None] = {}
        self._tmp: str | None = None  # beat's scratch directory, made when beat starts

    def _setenv(self, name: str, value: str) -> None:
        self._saved_env.setdefault(name, os.environ.get(name))
        os.environ[name] = value

    def start(self) -> DevStack:
        """Bring every piece up; settings of this process are pointed at them too.

        If any piece fails to start, the ones already up are stopped again.
        """
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> DevStack:
        settings = load_settings()
        if not settings.redis_url:
            self.redis = RedisServer(appendonly=True, appendfsync="always").start()
            self._setenv("REDIS_URL", self.redis.url)
            self.notes.append(f"embedded redis-server at {self.redis.url} (REDIS_URL)")
        if not settings.keys():
            from simulator.testing import SimulatorProcess

            sim = SimulatorProcess(gen_time_mean=self.gen_time, gen_time_jitter=0.2)
            sim.start()
            self.simulator = sim
            self._setenv("RELAYDANCE_API_KEY", SIMULATOR_KEY)
            self._setenv("RELAYDANCE_BASE_URL", sim.url)
            self._setenv("RELAYDANCE_ALLOW_LOCAL_URLS", "true")
            if settings.poll_first_delay is None:
                self._setenv("RELAYDANCE_POLL_FIRST_DELAY", str(self.gen_time))
                self._setenv("RELAYDANCE_POLL_INTERVAL_MIN", "0.5")
                self._setenv("RELAYDANCE_POLL_INTERVAL_MAX", "1")
            self.notes.append(f"local simulator at {sim.url} (no API key set)")
        get_settings.cache_clear()
        reset_engine()
        celery = [sys.executable, "-m", "celery", "-A", "worker"]
        self._spawn(
            [*celery, "worker", "--pool", self.pool, "--concurrency", str(self.concurrency),
             "--loglevel", self.loglevel, "--without-gossip", "--without-mingle",
             "--hostname", f"dev-{os.getpid()}@%h"],
        )  # fmt: skip
        if self.beat:
            self._tmp = tempfile.mkdtemp(prefix="relaydance-dev-")
            schedule = str(Path(self._tmp) / "beat-schedule")
            self._spawn([*celery, "beat", "--loglevel", "WARNING", "--schedule", schedule])
        return self

    def _spawn(self, args: list[str]) -> None:
        out = None if self.log_file is None else self.log_file.open("ab")
        self._procs.append(
            subprocess.Popen(args, env=os.environ.copy(), stdout=out, stderr=subprocess.STDOUT)
        )

    def environment(self) -> dict[str, str]:
        """What the stack runs with, for the project's other terminals: its Redis and what
        this stack set itself (the simulator's URL and key)."""
        settings = get_settings()
        found = {name: os.environ[name] for name in self._saved_env if name in os.environ}
        if settings.redis_url:
            found["REDIS_URL"] = settings.redis_url
        if settings.redis_sentinel_master:
            found["RELAYDANCE_REDIS_SENTINEL_MASTER"] = settings.redis_sentinel_master
        return found

    def alive(self) -> bool:
        """Whether every child process is still running."""
        return all(proc.poll() is None for proc in self._procs)

    def stop(self) -> None:
        """Stop the worker and beat (warm shutdown), then the simulator and Redis."""
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self._procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()
        if self.simulator is not None:
            self.simulator.stop()  # type: ignore[attr-defined]
            self.simulator = None
        if self.redis is not None:
            self.redis.stop()
            self.redis = None
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()
        get_settings.cache_clear()
        reset_engine()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> DevStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
