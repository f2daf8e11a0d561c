"""The Flask and Django examples against a real fleet.

A view enqueues a render; the simulator's webhook reaches the framework's own receiver
(the Flask blueprint or the Django view, served for real over HTTP); a real Celery worker
re-fetches, downloads and finishes the job; the app's own ``on_done`` task records it;
the status page plays the clip. One worker serves both examples: the webhook port is a
small WSGI switch that hands requests to whichever app the running test put there.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from werkzeug.serving import WSGIRequestHandler, make_server

from config.settings import get_settings
from simulator import VIDEO_SHA256
from simulator.testing import SimulatorProcess
from tests.fleet import ROOT, Fleet, point_this_process_at, wait_for, webhook_env
from worker.infra.redis_server import RedisServer, free_port
from worker.job.engine import reset_engine

MODEL = "doubao-seedance-2-0-fast-260128"
EXAMPLES = ROOT / "examples"
INCLUDES = [
    "tasks.webhooks",
    "examples.flask_app.records",
    "examples.django_project.renders.records",
]

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass  # request paths carry callback tokens


@dataclass
class Switch:
    """A WSGI app that hands each request to ``current`` and notes who got which path."""

    current: tuple[str, WSGIApp] | None = None
    seen: list[tuple[str, str, str]] = field(default_factory=list)

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        assert self.current is not None
        name, app = self.current
        self.seen.append((name, environ["REQUEST_METHOD"], environ["PATH_INFO"]))
        return app(environ, start_response)

    def hooks_for(self, name: str, job_id: str) -> list[str]:
        return [
            p
            for n, m, p in self.seen
            if n == name and m == "POST" and p.startswith(f"/hooks/{job_id}/")
        ]


@dataclass
class Stack:
    switch: Switch
    sim: SimulatorProcess
    redis: redis.Redis

    def expect_late_poll(self) -> None:
        # The learned duration decides the first poll: keep it out of these tests' way.
        self.redis.hset("rd:timing", f"{MODEL}:5", "30")


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushall()
    sim = SimulatorProcess(gen_time_mean=0.3, gen_time_jitter=0.0).start()
    port = free_port()
    switch = Switch()
    server = make_server("127.0.0.1", port, switch, threaded=True, request_handler=_Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = webhook_env(redis_server.url, sim.url, port, tmp_path_factory.mktemp("renders"),
                      key="sk-test-integrations", secret="test-integrations-secret-uE7JK3FXMPSDcLk5xzXVPrnR-KnnFX_a")  # fmt: skip
    fleet = Fleet(env, tmp_path_factory.mktemp("logs"), concurrency=4, includes=INCLUDES)
    with pytest.MonkeyPatch.context() as monkeypatch:
        point_this_process_at(env, monkeypatch)
        try:
            fleet.start()
            yield Stack(switch, sim, client)
        finally:
            fleet.stop()
            server.shutdown()
            server.server_close()
            sim.stop()
            client.flushall()
            client.close()
    get_settings.cache_clear()
    reset_engine()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# Flask ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def flask_app(stack: Stack) -> Any:
    from examples.flask_app.app import create_app

    app = create_app()
    app.config["TESTING"] = True
    return app


def test_flask_example_renders_a_clip_finished_by_the_webhook_its_own_blueprint_received(
    stack: Stack, flask_app: Any
) -> None:
    stack.switch.current = ("flask", flask_app)
    stack.expect_late_poll()
    client = flask_app.test_client()
    answer = client.post("/api/renders", json={"prompt": "a paper boat", "seconds": 5})
    assert answer.status_code == 202, answer.json
    job_id = answer.json["job_id"]
    assert client.get(answer.json["status_url"]).status_code == 200

    def recorded() -> dict[str, Any] | None:
        status = client.get(f"/api/renders/{job_id}").json
        return status if status["record"] else None

    status = wait_for(recorded, what="the on_done record")
    assert status["state"] == "done" and status["polls"] == 0
    assert status["record"]["job_id"] == job_id and status["record"]["sha256"] == VIDEO_SHA256
    assert len(stack.switch.hooks_for("flask", job_id)) == 1

    page = client.get(f"/renders/{job_id}").get_data(as_text=True)
    assert (
        f'<video controls autoplay muted playsinline width="640" src="/videos/{job_id}.mp4">'
        in page
    )
    video = client.get(f"/videos/{job_id}.mp4")
    assert video.mimetype == "video/mp4" and _sha256(video.get_data()) == VIDEO_SHA256


def test_flask_example_form_redirects_to_the_status_page_and_refuses_bad_input(
    stack: Stack, flask_app: Any
) -> None:
    client = flask_app.test_client()
    answer = client.post("/renders", data={"prompt": "a kite", "seconds": "5"})
    assert answer.status_code == 303 and answer.location.startswith("/renders/rdj_")
    bad = client.post("/api/renders", json={"prompt": "a kite", "seconds": 99})
    assert bad.status_code == 400 and bad.json["problems"][0]["field"] == "seconds"
    assert client.post("/renders", data={"prompt": ""}).status_code == 400
    assert client.get("/renders/rdj_" + "0" * 32).status_code == 404
    assert client.get("/videos/..%2Fsecret.mp4").status_code == 404


# Django -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def django_app(stack: Stack) -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.syspath_prepend(str(EXAMPLES / "django_project"))
        monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "renders_site.settings")
        import django
        from django.core.wsgi import get_wsgi_application

        django.setup()
        yield get_wsgi_application()
    for name in [m for m in sys.modules if m.split(".")[0] in ("renders", "renders_site")]:
        del sys.modules[name]


def test_django_example_renders_a_clip_finished_by_the_webhook_its_own_view_received(
    stack: Stack, django_app: Any
) -> None:
    from django.test import Client

    stack.switch.current = ("django", django_app)
    stack.expect_late_poll()
    client = Client()
    answer = client.post(
        "/api/renders/",
        data=json.dumps({"prompt": "a paper boat", "seconds": 5}),
        content_type="application/json",
    )
    assert answer.status_code == 202, answer.content
    job_id = answer.json()["job_id"]
    assert client.get(answer.json()["status_url"]).status_code == 200

    def recorded() -> dict[str, Any] | None:
        status: dict[str, Any] = client.get(f"/api/renders/{job_id}").json()
        return status if status["record"] else None

    status = wait_for(recorded, what="the on_done record")
    assert status["state"] == "done" and status["polls"] == 0
    assert status["record"]["job_id"] == job_id and status["record"]["sha256"] == VIDEO_SHA256
    assert len(stack.switch.hooks_for("django", job_id)) == 1

    page = client.get(f"/renders/{job_id}").content.decode()
    assert (
        f'<video controls autoplay muted playsinline width="640" src="/videos/{job_id}.mp4">'
        in page
    )
    video = client.get(f"/videos/{job_id}.mp4")
    assert video["Content-Type"] == "video/mp4"
    assert _sha256(b"".join(video.streaming_content)) == VIDEO_SHA256


def test_django_example_form_redirects_and_the_webhook_view_refuses_forgeries(
    stack: Stack, django_app: Any
) -> None:
    from django.test import Client

    client = Client()
    assert 'name="csrfmiddlewaretoken"' in client.get("/").content.decode()
    answer = client.post("/renders/", data={"prompt": "a kite", "seconds": "5"})
    assert answer.status_code == 302 and answer["Location"].startswith("/renders/rdj_")
    job_id = answer["Location"].rsplit("/", 1)[-1]
    bad = client.post(
        "/api/renders/",
        data=json.dumps({"prompt": "x", "seconds": 99}),
        content_type="application/json",
    )
    assert bad.status_code == 400 and bad.json()["problems"][0]["field"] == "seconds"
    forged = client.post(f"/hooks/{job_id}/{'0' * 64}", data="{}", content_type="application/json")
    assert forged.status_code == 404
    assert client.get(f"/hooks/{job_id}/{'0' * 64}").status_code == 405
    oversized = client.post(
        f"/hooks/{job_id}/{_token(job_id)}",
        data=json.dumps({"pad": "x" * 70_000}),
        content_type="application/json",
    )
    assert oversized.status_code == 413
    assert client.get("/renders/rdj_" + "0" * 32).status_code == 404


def _token(job_id: str) -> str:
    from worker.job.callback import token_for

    secret = get_settings().webhook_secret
    assert secret is not None
    return token_for(secret.get_secret_value(), job_id)
