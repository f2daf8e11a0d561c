"""The download's tests: a fake resolver (no test touches real DNS) and a sink per test."""

from __future__ import annotations

import socket

import pytest

from tests.unit.download.fakes import DNS, Collected


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    def getaddrinfo(
        host: str, port: int, *args: object, **kwargs: object
    ) -> list[tuple[object, ...]]:
        if host not in DNS:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        out: list[tuple[object, ...]] = []
        for addr in DNS[host]:
            family = socket.AF_INET6 if ":" in addr else socket.AF_INET
            sockaddr = (addr, port, 0, 0) if family == socket.AF_INET6 else (addr, port)
            out.append((family, socket.SOCK_STREAM, 6, "", sockaddr))
        return out

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def sink() -> Collected:
    return Collected()
