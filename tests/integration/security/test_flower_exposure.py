"""Flower started by the Procfile listens on the loopback only, unless told otherwise.

Its login is HTTP Basic over plain HTTP: on every interface, a password crosses the
network in clear and anyone can try it. The Procfile's command is run for real (as
honcho runs it) and the listening socket read from ``/proc/net/tcp``.
"""

from __future__ import annotations

import time

import pytest

from tests.integration.security.test_network import _listeners
from tests.integration.test_flower_guard import _get, _start_flower, _stop
from worker.infra.redis_server import free_port

LOGIN = ("ops", "a-long-flower-password")


def _bound_addresses(env: dict[str, str], redis_url: str) -> set[str]:
    port = free_port()
    flower = _start_flower({"FLOWER_BASIC_AUTH": ":".join(LOGIN), "FLOWER_PORT": str(port), **env},
                           redis_url)  # fmt: skip
    try:
        for _ in range(300):  # bounded: about 30 s at most
            if (
                _get(f"http://127.0.0.1:{port}/healthcheck") is not None
                or flower.poll() is not None
            ):
                break
            time.sleep(0.1)
        found = {address for address, listening in _listeners() if listening == port}
    finally:
        err = _stop(flower)
    assert found, f"flower did not start: {err[-2000:]}"
    return found


@pytest.mark.parametrize(
    ("env", "bound"),
    [({}, {"127.0.0.1"}), ({"FLOWER_ADDRESS": "0.0.0.0"}, {"0.0.0.0"})],
    ids=["procfile-default-loopback", "flower-address-set"],
)
def test_the_procfiles_flower_listens_on_the_loopback_unless_told(
    redis_url: str, env: dict[str, str], bound: set[str]
) -> None:
    assert _bound_addresses(env, redis_url) == bound
