"""The unit set runs with no redis-server, no simulator process, no S3 server and no Celery
worker. A test here that asks for one fails loudly instead of quietly becoming slow and
dependent on services: asking for a service fixture stops the collection, and starting a
service process while a unit test runs raises :class:`NeedsAService`."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest

from simulator import SimConfig
from simulator.testing import InProcessSimulator, SimulatorProcess
from tests.conftest import FakeClock
from tests.s3_server import S3Server
from tests.simulator_requests import KEY
from worker.infra.redis_server import RedisServer

HERE = Path(__file__).resolve().parent
SERVICE_FIXTURES = frozenset({"redis_server", "simulator_process", "s3_server", "sentinel_group"})
# ``python -m <module>`` launches that start a service.
SERVICE_MODULES = frozenset({"celery", "simulator", "moto", "uvicorn", "honcho"})
# ``relaydance`` commands that start Redis, the simulator, a worker or a web server.
SERVICE_COMMANDS = frozenset({"demo", "dev", "web", "simulate"})


class NeedsAService(RuntimeError):
    """A unit test tried to start a service: it belongs in tests/integration/."""


def starts_a_service(args: Any) -> bool:
    """Whether a subprocess command line starts redis-server, the simulator, S3 or Celery."""
    argv = [str(a) for a in args] if isinstance(args, Sequence) and not isinstance(args, str) \
        else str(args).split()  # fmt: skip
    if any(os.path.basename(a).startswith("redis-server") for a in argv):
        return True
    if argv and os.path.basename(argv[0]) in SERVICE_MODULES:
        return True
    if any(a == "-m" and nxt.split(".")[0] in SERVICE_MODULES for a, nxt in pairwise(argv)):
        return True
    cli = any(os.path.basename(a) == "relaydance" or a == "worker.cli.main" for a in argv)
    return cli and any(a in SERVICE_COMMANDS for a in argv)


def _refuse(what: str) -> Any:
    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise NeedsAService(f"a unit test started {what}: move it to tests/integration/")

    return refuse


class _GuardedPopen(subprocess.Popen):  # type: ignore[type-arg]
    def __init__(self, args: Any, *rest: Any, **kwargs: Any) -> None:
        if starts_a_service(args):
            raise NeedsAService(f"a unit test ran {args!r}: move it to tests/integration/")
        super().__init__(args, *rest, **kwargs)


def _ours(item: pytest.Item) -> bool:
    return HERE in item.path.resolve().parents


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    wanting = [
        f"{item.nodeid} asks for {', '.join(sorted(SERVICE_FIXTURES & set(item.fixturenames)))}"
        for item in items
        if _ours(item) and SERVICE_FIXTURES & set(getattr(item, "fixturenames", ()))
    ]
    if wanting:
        raise pytest.UsageError(
            "unit tests need no service; move these to tests/integration/:\n" + "\n".join(wanting)
        )


@contextmanager
def _no_services() -> Iterator[None]:
    """Refuse every way a unit test could start a service, for one phase of one test."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(subprocess, "Popen", _GuardedPopen)
        patch.setattr(RedisServer, "start", _refuse("a redis-server"))
        patch.setattr(SimulatorProcess, "start", _refuse("the simulator process"))
        patch.setattr(S3Server, "start", _refuse("an S3 server"))
        yield


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    with _no_services():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    with _no_services():
        return (yield)


# The in-process simulator ---------------------------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    """Async unit tests (the in-process simulator's) run on asyncio."""
    return "asyncio"


@pytest.fixture
async def make_sim(clock: FakeClock) -> AsyncIterator[Callable[..., InProcessSimulator]]:
    """Build a fresh in-process simulator with the given key and knobs on the fake clock.

    Generation takes 10 s of that clock unless a test says otherwise, so a test moves a task
    along by advancing the clock, never by sleeping; every simulator built is closed after.
    """
    sims: list[InProcessSimulator] = []

    def make(key: str | None = KEY, **knobs: Any) -> InProcessSimulator:
        knobs = {"seed": 7, "gen_time_mean": 10.0, "gen_time_jitter": 0.0, **knobs}
        sim = InProcessSimulator(SimConfig(**knobs), api_key=key, clock=clock)
        sims.append(sim)
        return sim

    yield make
    for sim in sims:
        await sim.__aexit__(None, None, None)


@pytest.fixture
def make_client(make_sim: Callable[..., InProcessSimulator]) -> Callable[..., httpx.AsyncClient]:
    """Like ``make_sim``, for tests that talk to the simulator only through its client."""

    def make(key: str | None = KEY, **knobs: Any) -> httpx.AsyncClient:
        return make_sim(key, **knobs).client

    return make
