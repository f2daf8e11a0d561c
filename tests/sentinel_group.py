"""A Redis Sentinel group from real processes: a primary, a replica and three sentinels.

Both data nodes keep an append-only file. The sentinels watch the primary as ``mymaster``
with a quorum of two and a short ``down-after-milliseconds``, so killing the primary
promotes the replica within a few seconds. ``url`` is the fleet's ``REDIS_URL`` (the
three sentinels, as Celery's transport reads them) and :data:`MASTER` its
``RELAYDANCE_REDIS_SENTINEL_MASTER``.

For a partition (acknowledged writes that die with the primary), :meth:`pause_replica`
stops the replica's process (SIGSTOP) so it reads nothing from the primary, and
:meth:`resume_replica` lets it go on; kill the primary in between.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis
from redis.sentinel import Sentinel

from worker.infra.redis_server import RedisServer, find_redis_server, free_port

__all__ = ["MASTER", "SentinelGroup"]

MASTER = "mymaster"


class SentinelGroup:
    """Start with ``with SentinelGroup() as group:``; everything is stopped on exit."""

    def __init__(self, *, down_after_ms: int = 1000, failover_timeout_ms: int = 4000) -> None:
        self.primary = RedisServer(appendonly=True, appendfsync="always")
        self.replica: RedisServer | None = None
        self.sentinel_ports = [free_port() for _ in range(3)]
        self._down_after_ms = down_after_ms
        self._failover_timeout_ms = failover_timeout_ms
        self._dir = Path(tempfile.mkdtemp(prefix="relaydance-sentinel-"))
        self._sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """``REDIS_URL`` for the fleet: the three sentinels."""
        return ";".join(f"sentinel://127.0.0.1:{port}/0" for port in self.sentinel_ports)

    def start(self) -> SentinelGroup:
        """Start the primary, the replica (in sync) and the sentinels (each seeing the rest)."""
        try:
            self.primary.start()
            self.replica = RedisServer(
                appendonly=True, appendfsync="always",
                extra=["--replicaof", "127.0.0.1", str(self.primary.port)],
            ).start()  # fmt: skip
            _wait(lambda: _link_up(self.replica_client()), what="the replica to sync")
            for port in self.sentinel_ports:
                self._sentinels.append(self._start_sentinel(port))
            _wait(self._sentinels_see_each_other, what="the sentinels to find each other")
        except BaseException:
            self.stop()
            raise
        return self

    def _start_sentinel(self, port: int) -> subprocess.Popen[bytes]:
        conf = self._dir / f"sentinel-{port}.conf"  # sentinels rewrite their own file
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {self._dir}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {self.primary.port} 2\n"
            f"sentinel down-after-milliseconds {MASTER} {self._down_after_ms}\n"
            f"sentinel failover-timeout {MASTER} {self._failover_timeout_ms}\n"
            f"sentinel parallel-syncs {MASTER} 1\n"
        )
        log = (self._dir / f"sentinel-{port}.log").open("wb")
        return subprocess.Popen([find_redis_server(), str(conf), "--sentinel"],
                                stdout=log, stderr=subprocess.STDOUT)  # fmt: skip

    def _sentinels_see_each_other(self) -> bool:
        for port in self.sentinel_ports:
            client = redis.Redis(port=port, socket_connect_timeout=0.5, decode_responses=True)
            try:
                master = client.sentinel_master(MASTER)
                if int(master["num-other-sentinels"]) < 2 or int(master["num-slaves"]) < 1:
                    return False
            except redis.RedisError:
                return False
            finally:
                client.close()
        return True

    def sentinel_client(self) -> redis.Redis:
        """A client of the first sentinel."""
        return redis.Redis(port=self.sentinel_ports[0], decode_responses=True)

    def master_port(self) -> int | None:
        """The port the sentinels now name as the primary's."""
        for port in self.sentinel_ports:
            client = redis.Redis(port=port, socket_connect_timeout=0.5)
            try:
                found = client.sentinel_get_master_addr_by_name(MASTER)
                if found:
                    return int(found[1])
            except redis.RedisError:
                continue
            finally:
                client.close()
        return None

    def primary_client(self) -> redis.Redis:
        """A direct client of the original primary."""
        return redis.Redis(port=self.primary.port, decode_responses=True)

    def replica_client(self) -> redis.Redis:
        """A direct client of the original replica."""
        assert self.replica is not None
        return redis.Redis(port=self.replica.port, decode_responses=True)

    def kill_primary(self) -> None:
        """SIGKILL the primary (it is not started again)."""
        if self.primary.pid is not None:
            os.kill(self.primary.pid, signal.SIGKILL)

    def wait_for_failover(self, *, timeout: float = 30.0) -> int:
        """Wait until the replica is primary, as a client of the sentinels finds it (every
        sentinel agreeing, none still flagging it down), and takes writes; its port."""
        assert self.replica is not None
        port = self.replica.port
        sentinels = [("127.0.0.1", p) for p in self.sentinel_ports]

        def promoted() -> bool:
            client = self.replica_client()
            try:
                if client.info("replication")["role"] != "master":
                    return False
                for address in sentinels:  # each alone, as a client may ask any first
                    found = Sentinel([address], socket_timeout=0.5).discover_master(MASTER)  # type: ignore[no-untyped-call]
                    if int(found[1]) != port:
                        return False
                return True
            except redis.RedisError:
                return False
            finally:
                client.close()

        _wait(promoted, timeout=timeout, what="the sentinels to promote the replica")
        return port

    def pause_replica(self) -> None:
        """Stop the replica's process: it reads nothing more from the primary."""
        assert self.replica is not None and self.replica.pid is not None
        os.kill(self.replica.pid, signal.SIGSTOP)

    def resume_replica(self) -> None:
        """Let a paused replica run again."""
        assert self.replica is not None and self.replica.pid is not None
        os.kill(self.replica.pid, signal.SIGCONT)

    def stop(self) -> None:
        """Stop the sentinels and both servers; remove their files."""
        for proc in self._sentinels:
            if proc.poll() is None:
                proc.terminate()
        for proc in self._sentinels:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._sentinels.clear()
        if self.replica is not None:
            if self.replica.pid is not None:
                os.kill(self.replica.pid, signal.SIGCONT)  # a paused one must hear SIGTERM
            self.replica.stop()
        self.primary.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> SentinelGroup:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _link_up(client: redis.Redis) -> bool:
    try:
        return client.info("replication").get("master_link_status") == "up"
    except redis.RedisError:
        return False
    finally:
        client.close()


def _wait(predicate, *, timeout: float = 20.0, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
