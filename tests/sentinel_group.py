"""A Redis Sentinel group from real processes: a primary, replicas and three sentinels.

Every data node keeps an append-only file. The sentinels watch the primary as ``mymaster``
with a quorum of two and a short ``down-after-milliseconds``, so killing the primary
promotes a replica within a few seconds. With two replicas (the default) the other one
follows the new primary, so writes confirmed by a replica (``WAIT``) go on after a
failover. ``url`` is the fleet's ``REDIS_URL`` (the three sentinels, as Celery's transport
reads them) and :data:`MASTER` its ``RELAYDANCE_REDIS_SENTINEL_MASTER``.

For a partition (acknowledged writes that die with the primary), :meth:`pause_replica`
stops the replicas' processes (SIGSTOP) so they read nothing from the primary, and
:meth:`resume_replica` lets them go on; kill the primary in between. The kernel still
buffers what the primary sent to a stopped replica, and a resumed one reads it: push more
than that (:meth:`fill_socket_buffers`) before the writes that must be lost.
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
# A replica's full sync starts at once (Redis waits 5 s by default, for more replicas).
_NO_SYNC_DELAY = ["--repl-diskless-sync-delay", "0"]


class SentinelGroup:
    """Start with ``with SentinelGroup() as group:``; everything is stopped on exit."""

    def __init__(
        self, *, replicas: int = 2, down_after_ms: int = 1000, failover_timeout_ms: int = 4000
    ) -> None:
        self.primary = RedisServer(appendonly=True, appendfsync="always", extra=_NO_SYNC_DELAY)
        self.replicas: list[RedisServer] = []
        self._replica_count = replicas
        self.sentinel_ports = [free_port() for _ in range(3)]
        self._down_after_ms = down_after_ms
        self._failover_timeout_ms = failover_timeout_ms
        self._dir = Path(tempfile.mkdtemp(prefix="relaydance-sentinel-"))
        self._sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """``REDIS_URL`` for the fleet: the three sentinels."""
        return ";".join(f"sentinel://127.0.0.1:{port}/0" for port in self.sentinel_ports)

    @property
    def replica(self) -> RedisServer:
        """The first replica."""
        return self.replicas[0]

    def start(self) -> SentinelGroup:
        """Start the primary, the replicas (in sync) and the sentinels (each seeing the rest)."""
        try:
            self.primary.start()
            for _ in range(self._replica_count):
                self.replicas.append(RedisServer(
                    appendonly=True, appendfsync="always",
                    extra=[*_NO_SYNC_DELAY, "--replicaof", "127.0.0.1", str(self.primary.port)],
                ).start())  # fmt: skip
            for replica in self.replicas:
                _wait(lambda r=replica: _link_up(_client(r)), what="the replicas to sync")
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
                if int(master["num-other-sentinels"]) < 2 or int(master["num-slaves"]) < len(
                    self.replicas
                ):
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
        """A direct client of the first replica."""
        return _client(self.replica)

    def new_primary_client(self) -> redis.Redis:
        """A direct client of the primary the sentinels name now."""
        port = self.master_port()
        assert port is not None
        return redis.Redis(port=port, decode_responses=True)

    def kill_primary(self) -> None:
        """SIGKILL the primary (it is not started again)."""
        if self.primary.pid is not None:
            os.kill(self.primary.pid, signal.SIGKILL)

    def wait_for_failover(self, *, timeout: float = 30.0) -> int:
        """Wait until a replica is primary, as a client of the sentinels finds it (every
        sentinel agreeing, none still flagging it down), takes writes and, with more than
        one replica, has the others following it again; its port."""
        sentinels = [("127.0.0.1", p) for p in self.sentinel_ports]
        ports = {r.port for r in self.replicas}
        found_port: list[int] = []

        def promoted() -> bool:
            try:
                found = {
                    int(Sentinel([address], socket_timeout=0.5).discover_master(MASTER)[1])  # type: ignore[no-untyped-call]
                    for address in sentinels  # each alone, as a client may ask any first
                }
            except redis.RedisError:
                return False
            if len(found) != 1 or not found <= ports:
                return False
            port = found.pop()
            client = redis.Redis(port=port, decode_responses=True)
            try:
                info = client.info("replication")
                if info["role"] != "master":
                    return False
                if int(info.get("connected_slaves", 0)) < len(self.replicas) - 1:
                    return False
            except redis.RedisError:
                return False
            finally:
                client.close()
            found_port[:] = [port]
            return True

        _wait(promoted, timeout=timeout, what="the sentinels to promote a replica")
        return found_port[0]

    def pause_replica(self) -> None:
        """Stop the replicas' processes: they read nothing more from the primary."""
        for replica in self.replicas:
            assert replica.pid is not None
            os.kill(replica.pid, signal.SIGSTOP)

    def resume_replica(self) -> None:
        """Let paused replicas run again."""
        for replica in self.replicas:
            assert replica.pid is not None
            os.kill(replica.pid, signal.SIGCONT)

    def fill_socket_buffers(self) -> int:
        """Write to the primary more than the kernel can buffer towards a stopped replica
        (its send and the replica's receive buffer, at their largest), so that whatever
        is written next waits in the primary's own memory and dies with it; the bytes."""
        chunk = 4 * 1024 * 1024
        total = _sysctl_max("net/ipv4/tcp_wmem") + _sysctl_max("net/ipv4/tcp_rmem") + chunk
        client = self.primary_client()
        try:
            for n in range(0, total, chunk):
                client.set(f"filler:{n}", "x" * chunk)
        finally:
            client.close()
        return total

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
        for replica in self.replicas:
            if replica.pid is not None:
                os.kill(replica.pid, signal.SIGCONT)  # a paused one must hear SIGTERM
            replica.stop()
        self.primary.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> SentinelGroup:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _client(server: RedisServer) -> redis.Redis:
    return redis.Redis(port=server.port, decode_responses=True)


def _sysctl_max(name: str) -> int:
    """The largest size of a TCP buffer (``tcp_wmem``, ``tcp_rmem``: min default max)."""
    try:
        return int(Path("/proc/sys", name).read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        return 8 * 1024 * 1024


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
