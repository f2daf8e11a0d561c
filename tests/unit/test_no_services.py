"""The unit set's guard (tests/unit/conftest.py) refuses every service a unit test might start."""

from __future__ import annotations

import subprocess
import sys

import pytest

from simulator.testing import SimulatorProcess
from tests.s3_server import S3Server
from tests.unit.conftest import NeedsAService, starts_a_service
from worker.infra.redis_server import RedisServer


def test_a_unit_test_cannot_start_a_redis_server() -> None:
    with pytest.raises(NeedsAService, match="redis-server"):
        RedisServer().start()


def test_a_unit_test_cannot_start_the_simulator_or_s3() -> None:
    with pytest.raises(NeedsAService, match="simulator"):
        SimulatorProcess().start()
    with pytest.raises(NeedsAService, match="S3"):
        S3Server().start()


@pytest.mark.parametrize(
    "argv",
    [
        ["/usr/bin/redis-server", "--port", "0"],
        [sys.executable, "-m", "celery", "-A", "worker", "worker"],
        [sys.executable, "-m", "simulator", "--port", "1"],
        [sys.executable, "-m", "moto.server"],
        ["celery", "-A", "worker", "beat"],
        ["/venv/bin/relaydance", "demo"],
        [sys.executable, "-m", "worker.cli.main", "dev"],
        ["relaydance", "web", "--port", "0"],
    ],
)
def test_a_unit_test_cannot_launch_a_service_process(argv: list[str]) -> None:
    assert starts_a_service(argv)
    with pytest.raises(NeedsAService):
        subprocess.run(argv, check=False)


def test_other_subprocesses_still_run() -> None:
    done = subprocess.run([sys.executable, "-c", "print(1)"], capture_output=True, text=True)
    assert done.stdout.strip() == "1"


@pytest.mark.parametrize(
    "argv",
    [["relaydance", "models"], [sys.executable, "-m", "worker.cli.main", "render", "--help"]],
)
def test_a_command_that_starts_nothing_is_allowed(argv: list[str]) -> None:
    assert not starts_a_service(argv)
