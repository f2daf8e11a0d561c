"""Hostile input over the network: every row is an attack, driven through the real entry point.

Two tables here: webhook deliveries (the Starlette receiver over HTTP, then every task it
queued run as the worker would) and metrics requests from a non-loopback client, both
against a real Redis. The third, downloads from a provider URL whose name rebinds, needs
no service and is in tests/unit/security/test_network_downloads.py. For every row the test
asserts all three: nothing was spent (no provider GET, no connection to a refused address),
nothing wrong was written (the job record is unchanged, no file), and the answer or error
is the specified one. docs/security.md lists the rows.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from pydantic import SecretStr
from starlette.testclient import TestClient

from config.settings import load_settings
from tests.pipeline_helpers import RecordingEngine, make_engine, make_job
from worker.infra.redis_server import RedisServer
from worker.job.callback import token_for
from worker.job.record import JobState
from worker.job.webhook import on_webhook
from worker.provider.client import ApiClient
from worker.web.app import create_web_app

SECRET = "security-webhook-secret-IrOjV7dDqZ22Nlk9Rysmk4maK2k0mKUE"
KEY = "sk-test-security-net"
MODEL = "doubao-seedance-2-0-fast-260128"
S = JobState
OUTSIDE = ("203.0.113.9", 40000)  # a client that is not on the loopback


class Provider:
    """A fake provider API: ``GET /video/generations/{id}`` from ``tasks``; counts calls."""

    def __init__(self) -> None:
        self.tasks: dict[str, dict[str, Any]] = {}
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        task_id = request.url.path.rsplit("/", 1)[-1]
        if request.method == "GET" and task_id in self.tasks:
            return httpx.Response(200, json=self.tasks[task_id])
        return httpx.Response(404, json={"error": {"message": "no such task"}})

    def task(self, task_id: str, status: str) -> None:
        url = f"https://cdn.provider.test/{task_id}.mp4?sig=abc" if status == "succeeded" else None
        self.tasks[task_id] = {
            "task_id": task_id, "status": status, "model": MODEL, "seconds": "5", "url": url,
        }  # fmt: skip


@pytest.fixture
def provider() -> Provider:
    return Provider()


@pytest.fixture
def engine(
    redis_server: RedisServer, provider: Provider, tmp_path: Path
) -> Iterator[RecordingEngine]:
    url = redis_server.url.rsplit("/", 1)[0] + "/2"  # a database of its own, emptied
    redis.Redis.from_url(url).flushdb()
    settings = load_settings(
        redis_url=url, api_key=KEY, base_url="https://provider.test/v1",
        webhook_base_url="https://app.example/hooks", webhook_secret=SECRET,
        output_dir=tmp_path / "renders", metrics_port=0,
    )  # fmt: skip
    eng = make_engine(settings)
    eng.client.close()
    eng.client = ApiClient(base_url=settings.base_url, transport=httpx.MockTransport(provider))
    yield eng
    eng.close()


def _record(engine: RecordingEngine, job_id: str) -> dict[Any, Any]:
    return dict(engine.redis.hgetall(engine.store.key(job_id)))


# --- webhooks ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hook:
    """One hostile delivery: the job as it stands, what is sent, and what must come back."""

    state: JobState
    fields: Mapping[str, object]
    body: bytes
    answers: tuple[int, ...]  # one status per copy sent
    token: str = "good"  # good | forged | legacy | expired | tampered
    tasks: dict[str, str] = field(default_factory=dict)  # what the provider knows
    gets: int = 0  # provider GETs allowed (a replayed genuine delivery: its one check)


def _body(payload: object) -> bytes:
    return json.dumps(payload).encode()


RUNNING = {"remote_task_id": "task_own", "remote_status": "running"}
HOOKS = [
    pytest.param(Hook(S.RUNNING, RUNNING, _body({"task_id": "task_own"}), (404,),
                      token="forged"), id="token-signed-with-another-secret"),
    pytest.param(Hook(S.RUNNING, RUNNING, _body({"task_id": "task_own"}), (404,),
                      token="legacy"), id="token-without-expiry"),
    pytest.param(Hook(S.RUNNING, RUNNING, _body({"task_id": "task_own"}), (410,),
                      token="expired"), id="token-expired"),
    pytest.param(Hook(S.RUNNING, RUNNING, _body({"task_id": "task_own"}), (404,),
                      token="tampered"), id="token-expiry-moved-forward"),
    pytest.param(Hook(S.RUNNING, RUNNING, b"[" * 60000 + b"]" * 60000, (413,)),
                 id="body-oversized-nesting"),
    pytest.param(Hook(S.RUNNING, RUNNING, b"[" * 30000 + b"]" * 30000, (400,)),
                 id="body-nested-30000-deep"),
    pytest.param(Hook(S.RUNNING, RUNNING, b'{"a":' * 9000 + b"1" + b"}" * 9000, (400,)),
                 id="body-objects-nested-9000-deep"),
    pytest.param(Hook(S.DONE, {"remote_task_id": "task_own"},
                      _body({"task_id": "task_own", "status": "succeeded"}), (200, 200, 200),
                      tasks={"task_own": "succeeded"}), id="replay-to-finished-job"),
    pytest.param(Hook(S.CANCELED, {"billing": "unknown"}, _body({"task_id": "task_other"}),
                      (200,), tasks={"task_other": "succeeded"}),
                 id="foreign-task-to-canceled-job-in-doubt"),
    pytest.param(Hook(S.RUNNING, RUNNING, _body({"task_id": "task_other"}), (200, 200, 200),
                      tasks={"task_other": "succeeded"}), id="foreign-task-to-running-job"),
    pytest.param(Hook(S.WAITING_FOR_SLOT, {"billing": "none", "submit_attempts": 1},
                      _body({"task_id": "task_other"}), (200,),
                      tasks={"task_other": "succeeded"}), id="adopt-after-plain-429"),
    pytest.param(Hook(S.QUEUED, {}, _body({"task_id": "task_other"}), (200,),
                      tasks={"task_other": "succeeded"}), id="adopt-never-submitted"),
    pytest.param(Hook(S.RUNNING, RUNNING, _body({"task_id": "task_own", "status": "running"}),
                      (202, 202, 202), tasks={"task_own": "running"}, gets=1),
                 id="replay-x3-to-running-job"),
]  # fmt: skip


def _token(kind: str, job_id: str) -> str:
    now = int(time.time())
    if kind == "forged":
        return token_for("another-secret", job_id)
    if kind == "legacy":
        import hashlib
        import hmac

        return hmac.new(SECRET.encode(), job_id.encode(), hashlib.sha256).hexdigest()
    if kind == "expired":
        return token_for(SECRET, job_id, expires=now - 1)
    if kind == "tampered":
        mac = token_for(SECRET, job_id, expires=now - 1).split(".")[0]
        return f"{mac}.{now + 86400}"
    return token_for(SECRET, job_id)


def _run_queued(engine: RecordingEngine) -> None:
    """Run every webhook task the receiver queued, as the delivery worker would."""
    for name, args, _countdown in list(engine.sent):
        if name == "relaydance.webhook":
            on_webhook(engine, args[0], task_id=args[1])


@pytest.mark.parametrize("case", HOOKS)
def test_a_hostile_webhook_is_refused_spends_nothing_and_writes_nothing(
    engine: RecordingEngine, provider: Provider, case: Hook
) -> None:
    job_id = make_job(engine)
    applied, _ = engine.store._change(
        job_id, states=None, to=case.state, set=dict(case.fields) or None
    )
    assert applied or case.state is S.QUEUED
    for task_id, status in case.tasks.items():
        provider.task(task_id, status)
    before = _record(engine, job_id)
    path = f"/hooks/{job_id}/{_token(case.token, job_id)}"
    headers = {"Content-Type": "application/json"}
    with TestClient(create_web_app(engine=lambda: engine, prefix="/hooks"), client=OUTSIDE) as c:
        answers = tuple(
            c.post(path, content=case.body, headers=headers).status_code for _ in case.answers
        )
    _run_queued(engine)

    assert answers == case.answers  # the answer
    assert len(provider.requests) == case.gets  # nothing spent (a replay: one check at most)
    assert _record(engine, job_id) == before  # nothing written
    assert sum(1 for name, *_ in engine.sent if name == "relaydance.webhook") <= case.gets


# --- metrics -------------------------------------------------------------------------------

METRICS_TOKEN = "metrics-token-Vq3xL8pN2sK7dR5wT9mB4yH6cJ1fG0aZ"
METRICS = [
    pytest.param({}, None, id="metrics-no-token-configured"),
    pytest.param({}, METRICS_TOKEN, id="metrics-anonymous"),
    pytest.param({"Authorization": "Bearer metrics-token-Wq3xL8pN2sK7dR5wT9mB4yH6cJ1fG0aZ"}, METRICS_TOKEN,
                 id="metrics-wrong-bearer"),
    pytest.param({"Authorization": "Basic bWV0cmljcy10b2tlbi1WcTN4TDhwTjJzSzdkUjV3VDltQjR5SDZjSjFmRzBhWg=="}, METRICS_TOKEN,
                 id="metrics-token-as-basic-auth"),
    pytest.param({"Authorization": "Bearer "}, METRICS_TOKEN, id="metrics-empty-bearer"),
]  # fmt: skip


@pytest.mark.parametrize(("headers", "token"), METRICS)
def test_metrics_are_not_served_to_the_public_without_the_token(
    engine: RecordingEngine, provider: Provider, headers: dict[str, str], token: str | None
) -> None:
    job_id = make_job(engine, key="default")
    engine.settings = engine.settings.model_copy(
        update={"metrics_token": SecretStr(token) if token else None}
    )
    keys_before = sorted(engine.redis.keys("*"))
    before = _record(engine, job_id)
    with TestClient(create_web_app(engine=lambda: engine, prefix="/hooks"), client=OUTSIDE) as c:
        answer = c.get("/metrics", headers=headers)

    assert answer.status_code == 404 and "relaydance_" not in answer.text  # the answer
    assert provider.requests == []  # nothing spent
    assert sorted(engine.redis.keys("*")) == keys_before and _record(engine, job_id) == before


def test_the_metrics_listener_does_not_listen_beyond_loopback(engine: RecordingEngine) -> None:
    from worker.infra.redis_server import free_port
    from worker.web.metrics import start_metrics_listener

    port = start_metrics_listener(
        engine.settings.model_copy(update={"metrics_port": free_port()}), lambda: engine
    )
    listening = [c for c in _listeners() if c[1] == port]
    assert listening and {addr for addr, _ in listening} == {"127.0.0.1"}


def _listeners() -> list[tuple[str, int]]:
    """(address, port) of every IPv4 TCP socket in LISTEN state on this host."""
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    out = []
    for row in rows:
        local, state = row.split()[1], row.split()[3]
        if state == "0A":
            hex_addr, hex_port = local.split(":")
            addr = socket.inet_ntoa(bytes.fromhex(hex_addr)[::-1])
            out.append((addr, int(hex_port, 16)))
    return out


# --- downloads -----------------------------------------------------------------------------
