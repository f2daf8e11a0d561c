"""Helpers for tests and benchmarks: the simulator as a child process, or in-process.

``SimulatorProcess`` runs ``python -m simulator`` on a free loopback port, the way the
fleet meets the provider in integration tests. ``InProcessSimulator`` binds an
``httpx.AsyncClient`` to the app itself, for fast unit tests with no socket.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from simulator.app import create_app
from simulator.config import ENV_PREFIX, SimConfig
from simulator.core import Simulator
from worker.infra.redis_server import free_port

__all__ = ["InProcessSimulator", "SimulatorProcess"]

_PROJECT_ROOT = Path(__file__).resolve().parent.parent


class SimulatorProcess:
    """``python -m simulator`` on a free 127.0.0.1 port; a context manager."""

    def __init__(self, *, port: int | None = None, **knobs: Any) -> None:
        self._requested_port = port
        self.port = port or 0
        self._knobs = knobs
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None
        self._http: httpx.Client | None = None

    @property
    def root(self) -> str:
        """``http://127.0.0.1:PORT``: where ``/_sim`` and ``/_files`` live."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The RelayDance base url clients use, ``http://127.0.0.1:PORT/v1``."""
        return f"{self.root}/v1"

    @property
    def kinovi_url(self) -> str:
        """The Kinovi base url clients use, ``http://127.0.0.1:PORT/api/v1``."""
        return f"{self.root}/api/v1"

    def start(self, *, timeout: float = 15.0) -> SimulatorProcess:
        """Start the process and wait (bounded) until it answers; retries a taken port."""
        SimConfig(**self._knobs)  # refuse bad knobs here, not as a silent child crash
        for _ in range(3):
            self.port = self._requested_port or free_port()
            if self._launch(timeout=timeout):
                return self
            if self._requested_port:
                break
        raise RuntimeError(f"simulator did not start on port {self.port}: {self._log_tail()}")

    def _launch(self, *, timeout: float) -> bool:
        env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        for name, value in self._knobs.items():
            if value is not None:
                text = str(value).lower() if isinstance(value, bool) else str(value)
                env[f"{ENV_PREFIX}{name.upper()}"] = text
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
        )
        fd, log = tempfile.mkstemp(prefix="relaydance-sim-", suffix=".log")
        self._log_path = Path(log)
        with os.fdopen(fd, "wb") as log_file:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "simulator", "--host", "127.0.0.1", "--port",
                 str(self.port)],
                stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=_PROJECT_ROOT,
            )  # fmt: skip
        self._http = httpx.Client(base_url=self.root, timeout=5.0)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:
                if self._http.get("/_sim/health").status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"simulator did not answer within {timeout} s: {self._log_tail()}")

    def _log_tail(self) -> str:
        if self._log_path is None or not self._log_path.exists():
            return "no log"
        return self._log_path.read_text(errors="replace")[-2000:]

    @property
    def pid(self) -> int:
        """Process id of the running simulator."""
        assert self._proc is not None
        return self._proc.pid

    def _client(self) -> httpx.Client:
        if self._http is None:
            raise RuntimeError("simulator not started")
        return self._http

    def stats(self) -> dict[str, Any]:
        """The ``/_sim/stats`` document."""
        response = self._client().get("/_sim/stats")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def tasks_for(self, idempotency_key: str) -> list[dict[str, Any]]:
        """Every task the simulator created under ``idempotency_key`` (a job id): its
        ``task_id``, ``failed``, ``created_at`` and ``input_urls`` (the media its body cited)."""
        response = self._client().get(f"/_sim/idempotency/{idempotency_key}")
        response.raise_for_status()
        tasks: list[dict[str, Any]] = response.json()["tasks"]
        return tasks

    def reset(self) -> None:
        """Forget tasks and counters (the knobs stay)."""
        self._client().post("/_sim/reset").raise_for_status()

    def configure(self, **knobs: Any) -> dict[str, Any]:
        """Change knobs at run time; answers the full config."""
        response = self._client().post("/_sim/config", json=knobs)
        if response.status_code != 200:
            raise ValueError(response.json()["error"]["message"])
        result: dict[str, Any] = response.json()
        return result

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after 5 s) and close the client."""
        if self._http is not None:
            self._http.close()
            self._http = None
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._log_path is not None:
            self._log_path.unlink(missing_ok=True)
            self._log_path = None

    def __enter__(self) -> SimulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class InProcessSimulator:
    """A fresh app served in-process through ``httpx.ASGITransport``; an async context manager.

    ``client`` (base ``http://sim.test``) carries ``Authorization: Bearer <api_key>``; the
    app's webhook loop runs on the caller's event loop and stops on exit. A fake ``clock``
    moves task status at once; webhooks still wait in real time, so test them with the
    real clock (or a :class:`SimulatorProcess`).
    """

    def __init__(
        self,
        config: SimConfig | None = None,
        *,
        api_key: str | None = "sk-test",
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.app = create_app(config, clock=clock)
        self.sim: Simulator = self.app.state.sim
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://sim.test", headers=headers
        )

    async def __aenter__(self) -> InProcessSimulator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()
        await self.sim.webhooks.aclose()
