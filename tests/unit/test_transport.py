"""Every provider call has an overall deadline, and says whether the request ever left.

A peer on loopback that trickles its reply (headers or body) a byte at a time would hold
an httpx call forever with per-read timeouts alone; the client's deadline ends it, as an
ambiguous failure (the request did arrive). A refused connection is ``NotSent``: the only
transport failure after which a submit may be sent again.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
from pydantic import SecretStr

from worker.errors import NotSent, ServerError, TransportFailure
from worker.infra.redis_server import free_port
from worker.provider.client import ApiClient

KEY = SecretStr("sk-test-transport")
BODY = b'{"task_id": "task_1", "status": "submitted"}'


class TricklingServer:
    """Answers each connection on loopback by sending ``reply`` one byte per ``pause``."""

    def __init__(self, reply: bytes, *, pause: float) -> None:
        self.reply, self.pause = reply, pause
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    _read_request(conn)
                    self.requests += 1
                    for i in range(len(self.reply)):  # bounded: one pass over the reply
                        if self._stop.is_set():
                            return
                        conn.sendall(self.reply[i : i + 1])
                        time.sleep(self.pause)
                except OSError:
                    continue  # the client gave up and closed

    def __enter__(self) -> TricklingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


def _read_request(conn: socket.socket) -> None:
    """Read one whole request (headers, then Content-Length bytes), so closing is clean."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return
        body += chunk


def _reply(body: bytes, status: str = "200 OK") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
    return head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


def test_a_body_trickled_past_the_call_deadline_ends_the_call_as_ambiguous() -> None:
    # The whole reply would take ~100 s at this pace; each byte comes well within the
    # read timeout, so only the overall deadline can end the call.
    with TricklingServer(_reply(BODY * 20), pause=0.1) as server:
        client = ApiClient(
            base_url=f"http://127.0.0.1:{server.port}/v1", read_timeout=5, call_deadline=0.6
        )
        with pytest.raises(TransportFailure) as caught:
            client.submit({"model": "m"}, api_key=KEY)
        client.close()
    assert not isinstance(caught.value, NotSent)  # the provider had the request
    assert server.requests == 1


def test_headers_trickled_past_the_call_deadline_end_the_call_too() -> None:
    with TricklingServer(_reply(BODY), pause=0.1) as server:
        client = ApiClient(
            base_url=f"http://127.0.0.1:{server.port}/v1", read_timeout=5, call_deadline=0.6
        )
        with pytest.raises(TransportFailure) as caught:
            client.get_task("task_1", api_key=KEY)
        client.close()
    assert not isinstance(caught.value, NotSent)


def test_a_reply_within_the_deadline_arrives_whole() -> None:
    with TricklingServer(_reply(BODY), pause=0.0) as server:
        client = ApiClient(base_url=f"http://127.0.0.1:{server.port}/v1", call_deadline=5)
        task = client.submit({"model": "m"}, api_key=KEY)
        client.close()
    assert task.task_id == "task_1"


def test_a_refused_connection_is_not_sent() -> None:
    client = ApiClient(base_url=f"http://127.0.0.1:{free_port()}/v1", connect_timeout=2)
    with pytest.raises(NotSent) as caught:
        client.submit({"model": "m"}, api_key=KEY)
    client.close()
    assert "not sent" in str(caught.value)
    assert KEY.get_secret_value() not in str(caught.value)


def test_a_5xx_is_ambiguous_not_unsent() -> None:
    with TricklingServer(_reply(b'{"error": "boom"}', "502 Bad Gateway"), pause=0.0) as server:
        client = ApiClient(base_url=f"http://127.0.0.1:{server.port}/v1")
        with pytest.raises(ServerError):
            client.submit({"model": "m"}, api_key=KEY)
        client.close()
