"""The provider client goes through its dialect, and is built from settings."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx
import pytest

from config.settings import Settings
from tests.unit.client.fakes import BASE, KEY, Recorder, answer
from worker.errors import BadRequest
from worker.provider.client import ApiClient, RemoteTask, TaskStatus
from worker.provider.dialects import Endpoint, get_dialect, known_dialects
from worker.provider.dialects.relaydance import error_message


def test_get_dialect_refuses_an_unknown_name_and_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown provider dialect 'nope'.*relaydance"):
        get_dialect("nope")
    assert known_dialects() == ("kinovi", "relaydance")
    assert get_dialect("relaydance").name == "relaydance"
    assert get_dialect("kinovi").name == "kinovi"


class ShoutingDialect:
    """A second provider format, in miniature: the client must route everything through it."""

    name = "shouting"

    def submit_endpoint(self) -> Endpoint:
        return Endpoint("/jobs/createTask")

    def task_endpoint(self, task_id: str) -> Endpoint:
        return Endpoint("/jobs/recordInfo", {"taskId": task_id})

    def upload_endpoint(self) -> Endpoint:
        return Endpoint("/upload")

    def submit_body(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return {"inputs": {"prompt": body["prompt"].upper()}}

    def parse_submit(self, data: Any) -> RemoteTask:
        return RemoteTask(task_id=data["data"]["taskId"], status=TaskStatus.SUBMITTED)

    def parse_task(self, data: Any, *, task_id: str | None = None) -> RemoteTask:
        status = {"generating": TaskStatus.RUNNING}.get(data["state"], TaskStatus.UNKNOWN)
        return RemoteTask(task_id=task_id or "", status=status, raw_status=data["state"])

    def parse_upload(self, data: Any) -> str:
        return str(data["link"])

    def error_message(self, data: Any, *, status: int | None = None) -> str | None:
        return "LOUD" if data else None


def test_the_client_goes_through_the_dialect_for_paths_bodies_and_parsing(tmp_path):
    def respond(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/createTask"):
            return httpx.Response(200, json={"code": 200, "data": {"taskId": "k1"}})
        if request.url.path.endswith("/recordInfo"):
            return httpx.Response(200, json={"state": "generating"})
        return httpx.Response(400, json={"anything": 1})

    seen = Recorder(respond)
    with ApiClient(
        base_url="https://kin.test/api/v1",
        transport=httpx.MockTransport(seen),
        dialect=ShoutingDialect(),
    ) as client:
        submitted = client.submit({"prompt": "quiet"}, api_key=KEY)
        polled = client.get_task("k1", api_key=KEY)
        (tmp_path / "a.png").write_bytes(b"png")
        with pytest.raises(BadRequest, match="LOUD"):
            client.upload(tmp_path / "a.png", api_key=KEY)

    assert submitted.task_id == "k1"
    assert json.loads(seen.bodies[0]) == {"inputs": {"prompt": "QUIET"}}
    assert str(seen.requests[1].url) == "https://kin.test/api/v1/jobs/recordInfo?taskId=k1"
    assert polled.status is TaskStatus.RUNNING
    assert polled.raw_status == "generating"
    assert seen.requests[2].url.path == "/api/v1/upload"


def test_error_message_tolerates_anything():
    assert error_message({"error": {"message": "m"}}) == "m"
    assert error_message({"error": {"code": 5}, "message": "fallback"}) == "fallback"
    assert error_message(None) is None
    assert error_message(3.5) is None
    assert error_message({"detail": []}) is None


def test_from_settings_uses_base_url_timeouts_and_dialect():
    settings = Settings(
        base_url="https://other.test/v2/", http_connect_timeout=3, http_read_timeout=7
    )
    seen = Recorder(answer(200, {"task_id": "t1", "status": "running"}))

    with ApiClient.from_settings(settings, transport=httpx.MockTransport(seen)) as client:
        client.get_task("t1", api_key=KEY)

    assert str(seen.last.url) == "https://other.test/v2/video/generations/t1"
    assert seen.last.extensions["timeout"] == {
        "connect": 3.0,
        "read": 7.0,
        "write": 7.0,
        "pool": 3.0,  # a call that never got a connection never left: bounded like connect
    }
    assert client.dialect.name == "relaydance"


def test_the_context_manager_closes_the_pool():
    with ApiClient(base_url=BASE, transport=httpx.MockTransport(answer(200, {}))) as client:
        assert not client.is_closed
    assert client.is_closed
