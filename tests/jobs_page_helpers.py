"""Helpers for the jobs page's tests: an engine with a UI token, jobs, a signed-in client."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from config.settings import get_settings
from worker.job.engine import Engine, get_engine, reset_engine
from worker.job.record import Job
from worker.render.validation import validate_request
from worker.web.jobs_page import JobsPage, asgi_app
from worker.web.jobs_page.actions import Actions

TOKEN = "ui-token-for-tests-VZ5Y7j1nWO85nasBorCPhccPVVj2gsak"
MP4 = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40


def new_job(engine: Engine, prompt: str = "a paper boat", *, alias: str = "default") -> str:
    request = validate_request({"model": "doubao-seedance-2-0-fast-260128", "prompt": prompt,
                                "seconds": 5})  # fmt: skip
    return engine.store.create_render(request, alias=alias)


class Recorder:
    """Actions that only record what the page asked for."""

    def __init__(self) -> None:
        self.canceled: list[str] = []

    def actions(self) -> Actions:
        def cancel(job_id: str) -> bool:
            self.canceled.append(job_id)
            return True

        def resubmit(job_id: str) -> Job:
            raise AssertionError("not expected")

        return Actions(cancel=cancel, resubmit=resubmit, clip_url=lambda job: None)


def client_for(page: JobsPage) -> TestClient:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    return TestClient(Starlette(routes=[Mount("/ui", app=asgi_app(page, root="/ui"))]))


def signed_in(client: TestClient) -> TestClient:
    answer = client.post("/ui/login", data={"token": TOKEN, "next": "/ui/jobs"},
                         follow_redirects=False)  # fmt: skip
    assert answer.status_code == 303, answer.text
    return client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found
    return found.group(1)


def engine_with_ui_token(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Engine]:
    """The engine of a page signed into with TOKEN, over an empty output directory."""
    for name in ("RELAYDANCE_UI_USER", "RELAYDANCE_UI_PASSWORD", "RELAYDANCE_OUTPUT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("RELAYDANCE_API_KEY", "sk-test-ui")
    monkeypatch.setenv("RELAYDANCE_UI_TOKEN", TOKEN)
    monkeypatch.setenv("RELAYDANCE_OUTPUT_DIR", str(tmp_path / "out"))
    (tmp_path / "out").mkdir()
    get_settings.cache_clear()
    reset_engine()
    yield get_engine()
    get_settings.cache_clear()
    reset_engine()
