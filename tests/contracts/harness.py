"""An engine on a given Redis client, and a provider that counts what it was sent.

The engine is the workers' own (store, limits, timing, steps); only its task sends are
recorded and its provider client talks to :class:`FakeProvider` through
``httpx.MockTransport``. The provider answers each POST by the next reply in its script
(``ok`` by default), so a test decides what the provider does and then counts what the
money logic made of it: POSTs, tasks created, billing, slots, budget.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from config.settings import Settings, load_settings
from tests.pipeline_helpers import RecordingEngine
from worker.infra.durability import Durability
from worker.job.engine import Engine
from worker.job.record import Job
from worker.job.store import JobStore
from worker.job.timing import Timing
from worker.limits import KeyLimits
from worker.provider.client import ApiClient
from worker.storage import make_storage

KEY = "sk-contract-money-key-" + "Qm9uZXlDb250cmFjdFRlc3RLZXkx"
BASE = "https://provider.test/v1"
SUBMIT = "/v1/video/generations"
MODEL = "doubao-seedance-2-0-fast-260128"


@dataclass
class FakeProvider:
    """RelayDance's submit and task endpoints, scripted per POST.

    ``replies``: what the next POSTs get, in order, then ``ok``. ``ok`` creates a task and
    answers it; ``drop`` creates a task and loses the reply (a read timeout), ``gateway``
    answers it with a proxy's 502 page and ``no_id`` with a 2xx naming no task; ``refuse``
    never lets the request in (a connect error); ``429``, ``500`` (the provider's own
    error JSON: nothing created) and ``400`` answer without creating a task.
    """

    replies: list[str] = field(default_factory=list)
    posts: int = 0
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    idempotency_keys: list[str] = field(default_factory=list)
    # Called as each POST arrives, before the task is made: what the fleet had recorded.
    on_post: Callable[[], None] | None = None
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and path == SUBMIT:
            return self._submit(request)
        if request.method == "GET" and path.startswith(SUBMIT + "/"):
            task = self.tasks.get(path.rsplit("/", 1)[1])
            if task is None:
                return _error(404, "task not found")
            return httpx.Response(200, json=task)
        return _error(404, f"no route {request.method} {path}")

    def _submit(self, request: httpx.Request) -> httpx.Response:
        reply = self.replies.pop(0) if self.replies else "ok"
        if reply == "refuse":
            raise httpx.ConnectError("connection refused", request=request)
        self.posts += 1
        if self.on_post is not None:
            self.on_post()
        self.idempotency_keys.append(request.headers.get("Idempotency-Key", ""))
        if reply in ("429", "500", "400"):
            return _error(int(reply), f"refused with {reply}")
        body = json.loads(request.content)
        task_id = f"task_{next(self._ids)}"
        self.tasks[task_id] = {
            "task_id": task_id,
            "status": "submitted",
            "model": body.get("model"),
            "seconds": body.get("seconds"),
        }
        if reply == "drop":
            raise httpx.ReadTimeout("the reply was lost", request=request)
        if reply == "gateway":  # a proxy's own page: the provider may have made the task
            return httpx.Response(502, text="<html>Bad Gateway</html>")
        if reply == "no_id":
            return httpx.Response(200, json={"status": "submitted"})
        return httpx.Response(200, json={"task_id": task_id, "status": "submitted"})

    def finish(self, task_id: str, status: str = "succeeded", **extra: Any) -> None:
        """Move a task on at the provider (``succeeded`` or ``failed``)."""
        self.tasks[task_id].update(status=status, **extra)

    @property
    def created(self) -> int:
        """Tasks the provider created: each one may be billed."""
        return len(self.tasks)


def _error(status: int, message: str) -> httpx.Response:
    body = {"error": {"message": message, "type": "error", "code": status}}
    return httpx.Response(status, json=body)


def job_of(engine: Engine, job_id: str) -> Job:
    """The job's record, which must exist."""
    job = engine.store.get(job_id)
    assert job is not None, f"job {job_id} has no record"
    return job


def set_up(engine: Engine, job_id: str, **change: Any) -> bool:
    """Put a record in the shape a case needs (what a killed worker or a lost write leaves,
    which no transition declares): the store's raw compare-and-set, any non-final state
    unless ``states`` says."""
    change.setdefault("states", None)
    applied, _ = engine.store._change(job_id, **change)
    return applied


def money_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings of a fleet with one key, fast timings and no real network."""
    values: dict[str, Any] = {
        "redis_url": "redis://unused.invalid:1/0",
        "api_key": KEY,
        "base_url": BASE,
        "output_dir": tmp_path / "renders",
        "max_transient_retries": 2,
        "submit_unknown_hold_seconds": 30,
        "step_grace_seconds": 5,
        "max_concurrency": 2,
        **overrides,
    }
    return load_settings(**values)


def money_engine(
    client: redis.Redis, provider: FakeProvider, settings: Settings
) -> RecordingEngine:
    """The workers' engine on ``client``, its provider ``provider``, its sends recorded."""
    engine = RecordingEngine(
        settings=settings,
        redis=client,
        store=JobStore(
            client,
            retention_seconds=settings.job_retention_seconds,
            durability=Durability(client, replicas=0, timeout_ms=1),
        ),
        limits=KeyLimits(client),
        timing=Timing(client, scale=settings.time_scale),
        client=ApiClient.from_settings(settings, transport=httpx.MockTransport(provider)),
        downloads=httpx.Client(transport=httpx.MockTransport(provider)),
        storage=make_storage(settings),
    )
    engine.sent = []
    return engine


class MoneyContract:
    """Fixtures of every money contract; ``redis_backend`` comes from the running set:
    fakeredis with Lua in tests/unit, the suite's own redis-server in tests/integration."""

    @pytest.fixture
    def provider(self) -> FakeProvider:
        return FakeProvider()

    @pytest.fixture
    def settings(self, tmp_path: Path) -> Settings:
        return money_settings(tmp_path)

    @pytest.fixture
    def engine(
        self, redis_backend: redis.Redis, provider: FakeProvider, settings: Settings
    ) -> Iterator[RecordingEngine]:
        engine = money_engine(redis_backend, provider, settings)
        yield engine
        engine.client.close()
        engine.downloads.close()


def fake_backend() -> redis.Redis:
    """fakeredis with its Lua support, on a server of its own (no state shared by tests)."""
    import fakeredis

    return fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
