"""Hostile downloads: a provider URL whose name rebinds or resolves to a refused address,
driven through ``stream_video`` with the real download client. The resolver and the OS
connect are replaced, so nothing leaves the host; for every row the test asserts that no
connection went to a refused address, nothing reached the sink, and the error is the specified
one. docs/security.md lists the rows; the webhook and metrics tables, which need a real
Redis, are in tests/integration/security/test_network.py.
"""

from __future__ import annotations

import io
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from worker.errors import TransportFailure, UnsafeUrl
from worker.provider.download import make_download_client, stream_video

PUBLIC = "93.184.216.34"


class Net:
    """A resolver whose answers change per lookup, and an OS connect that only records."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.lookups: list[str] = []
        self.dialled: list[str] = []

    def getaddrinfo(self, host: str, port: int, *args: object, **kw: object) -> list[Any]:
        self.lookups.append(host)
        if host not in self.answers:  # numeric hosts (an IP to connect to) resolve as is
            return [(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, 6,
                     "", (host, port))]  # fmt: skip
        seq = self.answers[host]
        addrs = seq[min(len([h for h in self.lookups if h == host]) - 1, len(seq) - 1)]
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
             (a, port, 0, 0) if ":" in a else (a, port))
            for a in addrs
        ]  # fmt: skip

    def create_connection(self, address: tuple[str, int], *args: object, **kw: object) -> Any:
        self.dialled.append(address[0])
        raise ConnectionRefusedError(111, "refused (the test's network connects nowhere)")


@dataclass(frozen=True)
class Fetch:
    url: str
    answers: dict[str, list[list[str]]]
    error: type[Exception]
    message: str
    dialled: tuple[str, ...] = ()  # the only addresses a connect may be attempted to
    direct: bool = False  # the client used outside stream_video (no pinned addresses)


FETCHES = [
    pytest.param(Fetch("https://rebind.test/clip.mp4?sig=s", {"rebind.test": [[PUBLIC],
                 ["127.0.0.1"]]}, TransportFailure, "refused", dialled=(PUBLIC,)),
                 id="rebind-public-then-loopback"),
    pytest.param(Fetch("https://rebind.test/clip.mp4?sig=s", {"rebind.test": [[PUBLIC],
                 ["169.254.169.254"]]}, TransportFailure, "refused", dialled=(PUBLIC,)),
                 id="rebind-public-then-metadata"),
    pytest.param(Fetch("https://mixed.test/clip.mp4", {"mixed.test": [[PUBLIC, "127.0.0.1"]]},
                 UnsafeUrl, "loopback"), id="name-with-public-and-loopback-answers"),
    pytest.param(Fetch("https://[fec0::1]/clip.mp4", {}, UnsafeUrl, "site-local"),
                 id="site-local-ipv6-literal"),
    pytest.param(Fetch("https://site.test/clip.mp4", {"site.test": [["fec0::7"]]}, UnsafeUrl,
                 "site-local"), id="name-resolving-to-site-local"),
    pytest.param(Fetch("https://rebind.test/clip.mp4", {"rebind.test": [["127.0.0.1"]]},
                 UnsafeUrl, "loopback", direct=True), id="client-used-without-a-check"),
    pytest.param(Fetch("https://v6.test/clip.mp4", {"v6.test": [["::ffff:127.0.0.1"]]},
                 UnsafeUrl, "loopback", direct=True), id="client-used-mapped-loopback"),
]  # fmt: skip


@pytest.mark.parametrize("case", FETCHES)
def test_a_download_never_connects_to_an_address_the_rules_refuse(
    monkeypatch: pytest.MonkeyPatch, case: Fetch
) -> None:
    sink = io.BytesIO()
    net = Net(case.answers)
    monkeypatch.setattr(socket, "getaddrinfo", net.getaddrinfo)
    monkeypatch.setattr(socket, "create_connection", net.create_connection)
    client = make_download_client(connect_timeout=2.0, read_timeout=2.0)
    call: Callable[[], object]
    if case.direct:
        call = lambda: client.get(case.url)  # noqa: E731
    else:
        call = lambda: stream_video(  # noqa: E731
            case.url, sink, client=client, max_bytes=1 << 20,
            allow_local=False, overall_timeout=10.0,
        )  # fmt: skip
    with client, pytest.raises(case.error) as caught:
        call()

    assert case.message in str(caught.value) and "sig=s" not in str(caught.value)  # the error
    assert tuple(net.dialled) == case.dialled  # no connection to a refused address
    assert sink.getvalue() == b""  # nothing written
