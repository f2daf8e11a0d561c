"""The jobs page behind things that forward connections: a real ``relaydance web`` over TCP.

Each server is the real command (uvicorn, its proxy-header handling, the page) on a free
loopback port, against a real redis-server. The attacks:

- a TCP forwarder on the same host (socat, stunnel, ``ssh -R``, haproxy in tcp mode)
  hands a remote client's bytes to the loopback server unchanged, ``Host`` included: it
  used to open the page to anyone when no credentials were set, and a remote client
  scraped the resubmit form's CSRF token and paid for a job twice;
- with the opening asked for (``--open-ui-on-loopback``), an HTTP proxy on the host
  (nginx, which by default rewrites ``Host`` to the loopback upstream) would do the same;
  it says so in a forwarding header, and is refused;
- a TLS proxy on another address: the scheme it reports is believed only from
  ``RELAYDANCE_TRUSTED_PROXIES``, so the cookie is ``Secure`` and HSTS is sent behind it,
  and nobody else can claim https, or another client address to dodge the throttle.

Clients pick their own source address inside 127.0.0.0/8 (another host, as far as the
server can tell). Every loop here is bounded.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from click.testing import CliRunner

from tests.integration.test_jobs_page import TOKEN
from worker.cli.main import main
from worker.infra.redis_server import free_port
from worker.job.record import JobState
from worker.job.store import JobStore
from worker.render.validation import validate_request
from worker.web.jobs_page.sessions import CLIENT_LIMIT

ROOT = Path(__file__).resolve().parents[3]
PROXY, STRANGER = "127.0.0.2", "127.0.0.3"  # a trusted TLS proxy; someone else


class Forwarder:
    """A TCP forwarder like ``socat TCP-LISTEN:<port>,fork TCP:127.0.0.1:<target>``: bytes
    both ways, unchanged. ``inject`` adds header lines after the request line, as an HTTP
    proxy does (one request per connection: the clients here close after each)."""

    def __init__(self, target: int, *, inject: bytes = b"") -> None:
        self.target, self.inject = target, inject
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target), timeout=10)
            threading.Thread(target=self._pipe, args=(conn, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, conn, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, first: bool) -> None:
        src.settimeout(10)
        try:
            while data := src.recv(65536):
                if first and self.inject and b"\r\n" in data:
                    line, _, rest = data.partition(b"\r\n")
                    data, first = line + b"\r\n" + self.inject + rest, False
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        self.server.close()


class Web:
    """``relaydance web`` as a child process, up once ``/healthz`` answers."""

    def __init__(self, env: dict[str, str], log: Path, *flags: str) -> None:
        self.port = free_port()
        args = [sys.executable, "-m", "worker.cli.main", "web", "--host", "127.0.0.1",
                "--port", str(self.port), *flags]  # fmt: skip
        self.proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=log.open("wb"),
                                     stderr=subprocess.STDOUT)  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"relaydance web did not start: {log.read_text()[-2000:]}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def client_from(address: str) -> httpx.Client:
    """A client whose connections leave from ``address`` (a different host to the server)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=10)


@pytest.fixture
def env(redis_url: str, tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("RELAYDANCE_") and k != "REDIS_URL"}  # fmt: skip
    return {**clean, "REDIS_URL": redis_url, "RELAYDANCE_API_KEY": "sk-test-exposure",
            "RELAYDANCE_METRICS_PORT": "0", "RELAYDANCE_OUTPUT_DIR": str(tmp_path / "out")}  # fmt: skip


@pytest.fixture
def job_in_doubt(redis_url: str) -> Iterator[tuple[JobStore, str]]:
    """A job whose submission is unknown: resubmitting it may pay twice."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    store = JobStore(client)
    request = validate_request({"model": "doubao-seedance-2-0-fast-260128", "prompt": "a boat"})
    job_id = store.create_render(request, alias="default")
    store._change(job_id, states=None, to=JobState.SUBMIT_UNKNOWN)
    yield store, job_id
    client.close()


def test_a_tcp_forwarder_on_the_host_no_longer_opens_the_page_to_a_remote_client(
    env: dict[str, str], tmp_path: Path, job_in_doubt: tuple[JobStore, str]
) -> None:
    store, job_id = job_in_doubt
    web = Web(env, tmp_path / "web.log")  # no credentials, no opt-in: what `relaydance web` does
    forwarder = Forwarder(web.port)
    try:
        with client_from(STRANGER) as remote:
            via = f"http://127.0.0.1:{forwarder.port}/ui/jobs/{job_id}/resubmit"
            confirm = remote.get(via, headers={"Host": "localhost"})  # the client picks Host
            assert confirm.status_code == 403
            assert 'name="csrf"' not in confirm.text  # nothing to scrape
            posted = remote.post(via, headers={"Host": "localhost"}, data={"csrf": "x"})
            assert posted.status_code == 403
            direct = httpx.get(f"{web.url}/ui/jobs", headers={"Host": "localhost"})
            assert direct.status_code == 403  # not even this machine, without the opt-in
    finally:
        forwarder.close()
        web.stop()
    job = store.get(job_id)
    assert job is not None and job.state is JobState.SUBMIT_UNKNOWN  # never resubmitted


PROXY_HEADERS = {
    "x-forwarded-for": b"X-Forwarded-For: 203.0.113.9\r\n",
    "forwarded": b"Forwarded: for=203.0.113.9;proto=https\r\n",
    "x-real-ip": b"X-Real-IP: 203.0.113.9\r\n",
    "via": b"Via: 1.1 edge\r\n",
}


def test_with_the_opt_in_a_request_an_http_proxy_forwarded_is_refused(
    env: dict[str, str], tmp_path: Path
) -> None:
    web = Web(env, tmp_path / "web.log", "--open-ui-on-loopback")
    try:
        assert httpx.get(f"{web.url}/ui/jobs").status_code == 200  # this machine, directly
        for name, header in PROXY_HEADERS.items():
            proxy = Forwarder(web.port, inject=header)  # nginx-like: Host is the upstream's
            try:
                answer = httpx.get(f"http://127.0.0.1:{proxy.port}/ui/jobs",
                                   headers={"Host": f"127.0.0.1:{web.port}"})  # fmt: skip
            finally:
                proxy.close()
            assert answer.status_code == 403, name
            assert f"came through a proxy ({name})" in answer.text
    finally:
        web.stop()


def test_the_opt_in_is_refused_off_loopback_and_with_several_workers() -> None:
    runner = CliRunner()
    wide = runner.invoke(main, ["web", "--host", "0.0.0.0", "--open-ui-on-loopback"])
    assert wide.exit_code == 2 and "needs a loopback --host" in wide.output
    many = runner.invoke(main, ["web", "--workers", "2", "--open-ui-on-loopback"])
    assert many.exit_code == 2 and "serves one process" in many.output


def test_behind_a_trusted_tls_proxy_https_and_the_client_are_known_and_cannot_be_claimed(
    env: dict[str, str], tmp_path: Path
) -> None:
    env = {**env, "RELAYDANCE_UI_TOKEN": TOKEN, "RELAYDANCE_TRUSTED_PROXIES": PROXY}
    web = Web(env, tmp_path / "web.log")
    try:
        with client_from(PROXY) as proxy, client_from(STRANGER) as stranger:
            _secure_cookie_and_hsts_only_behind_the_proxy(web, proxy, stranger)
            _throttle_counts_the_client_the_proxy_names(web, proxy, stranger)
    finally:
        web.stop()
    assert re.search(
        r"jobs page on http://127\.0\.0\.1:\d+/ui/", (tmp_path / "web.log").read_text()
    )


def _secure_cookie_and_hsts_only_behind_the_proxy(
    web: Web, proxy: httpx.Client, stranger: httpx.Client
) -> None:
    form = {"token": TOKEN, "next": "/ui/jobs"}
    tls = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.4"}
    behind = proxy.post(f"{web.url}/ui/login", data=form, headers=tls)
    assert behind.status_code == 303
    assert "; Secure" in behind.headers["set-cookie"]
    assert behind.headers["strict-transport-security"].startswith("max-age=")
    claimed = stranger.post(f"{web.url}/ui/login", data=form, headers=tls)
    assert claimed.status_code == 303  # signed in, but its https claim is not believed
    assert "Secure" not in claimed.headers["set-cookie"]
    assert "strict-transport-security" not in claimed.headers


def _throttle_counts_the_client_the_proxy_names(
    web: Web, proxy: httpx.Client, stranger: httpx.Client
) -> None:
    wrong = {"Authorization": "Bearer not-the-token"}
    right = {"Authorization": f"Bearer {TOKEN}"}
    for _ in range(CLIENT_LIMIT):
        guess = proxy.get(
            f"{web.url}/ui/jobs", headers={**wrong, "X-Forwarded-For": "203.0.113.50"}
        )
        assert guess.status_code == 401
    locked = proxy.get(f"{web.url}/ui/jobs", headers={**right, "X-Forwarded-For": "203.0.113.50"})
    assert locked.status_code == 429
    other = proxy.get(f"{web.url}/ui/jobs", headers={**right, "X-Forwarded-For": "198.51.100.60"})
    assert other.status_code == 200  # the proxy's other clients are not locked out
    # Someone who is not the proxy cannot pick the address it is counted by.
    for n in range(CLIENT_LIMIT):
        stranger.get(f"{web.url}/ui/jobs", headers={**wrong, "X-Forwarded-For": f"192.0.2.{n}"})
    assert stranger.get(f"{web.url}/ui/jobs", headers=right).status_code == 429
