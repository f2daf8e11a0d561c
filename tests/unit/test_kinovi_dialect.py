"""The Kinovi dialect: createTask/recordInfo, its task and webhook shapes, its error bodies.

Unit tests through ``httpx.MockTransport``: the client's status mapping is shared with
RelayDance, the dialect only spells paths and bodies and reads answers.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from worker.errors import (
    BadRequest,
    ErroredRequest,
    Forbidden,
    InsufficientCredits,
    ModelForbidden,
    RateLimited,
    ServerError,
    Unauthorized,
    UnexpectedResponse,
)
from worker.provider.client import ApiClient
from worker.provider.dialects import TaskStatus, get_dialect
from worker.provider.dialects.kinovi import NoUploadEndpoint, error_message, parse_task, submit_body

KEY = SecretStr("kin-live-0123456789")
BASE = "https://kinovi.test/api/v1"
SUCCESS = {
    "taskId": "task_abc",
    "model": "seedance-20",
    "status": "success",
    "creditsUsed": 200,
    "output": [{"url": "https://cdn.kinovi.test/out.mp4?sig=1", "width": 1280, "height": 720}],
    "error": None,
    "createTime": 1760000000000,
    "completeTime": 1760000090000,
}


def client_answering(respond: Any, seen: list[httpx.Request] | None = None) -> ApiClient:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return respond(request)

    return ApiClient(base_url=BASE, transport=httpx.MockTransport(handler), dialect="kinovi")


def test_a_task_record_gives_status_first_output_url_and_credits_as_actual_cost() -> None:
    task = parse_task(SUCCESS, task_id="task_abc")
    assert task.status is TaskStatus.SUCCEEDED
    assert task.url == "https://cdn.kinovi.test/out.mp4?sig=1"
    assert task.actual_cost == 1.0  # 200 credits at $0.005
    assert task.extra["model"] == "seedance-20"  # what adoption compares with the job
    assert task.error is None


@pytest.mark.parametrize(
    ("raw", "status"),
    [("waiting", TaskStatus.SUBMITTED), ("generating", TaskStatus.RUNNING),
     ("success", TaskStatus.SUCCEEDED), ("fail", TaskStatus.FAILED),
     ("paused", TaskStatus.UNKNOWN)],
)  # fmt: skip
def test_each_kinovi_status_maps_to_the_neutral_one(raw: str, status: TaskStatus) -> None:
    task = parse_task({"taskId": "t1", "status": raw})
    assert task.status is status
    assert task.raw_status == raw


def test_a_failed_task_carries_the_providers_message_and_code_and_costs_nothing() -> None:
    body = {"taskId": "t1", "status": "fail", "creditsUsed": 0,
            "error": {"code": "2038", "message": "Prompt flagged by content moderation"}}  # fmt: skip
    task = parse_task(body)
    assert task.status is TaskStatus.FAILED
    assert task.error == "Prompt flagged by content moderation (code 2038)"
    assert task.actual_cost == 0.0


def test_the_webhook_envelope_is_read_from_data_with_state_or_status() -> None:
    data = {**SUCCESS, "orderId": "o1", "updateTime": 1}
    data.pop("status")
    for key in ("state", "status"):
        envelope = {"code": 200, "message": "success", "data": {**data, key: "success"}}
        task = get_dialect("kinovi").parse_task(envelope)
        assert (task.task_id, task.status, task.actual_cost) == (
            "task_abc",
            TaskStatus.SUCCEEDED,
            1.0,
        )


def test_an_answer_for_another_task_or_without_an_id_is_unusable() -> None:
    with pytest.raises(UnexpectedResponse, match="asked for task t2"):
        parse_task(SUCCESS, task_id="t2")
    with pytest.raises(UnexpectedResponse, match=r"no taskId.*provider said: nope"):
        get_dialect("kinovi").parse_submit({"message": "nope"})


def test_error_bodies_give_their_message_and_403_says_what_it_means() -> None:
    assert error_message({"message": "Not enough credits"}) == "Not enough credits"
    assert error_message("plain text") == "plain text"
    assert error_message({}) is None
    said = error_message({"message": "Access denied"}, status=403)
    assert said is not None
    assert said.startswith("API access is not enabled for this key, or the task belongs")
    assert said.endswith("(Access denied)")


def test_submit_posts_the_translated_body_and_reads_the_task_id() -> None:
    seen: list[httpx.Request] = []
    client = client_answering(lambda r: httpx.Response(200, json={"taskId": "task_1"}), seen)
    neutral = {"model": "seedance-20", "prompt": "a fox", "seconds": "6",
               "metadata": {"callback_url": "https://hooks.test/j/t"}}  # fmt: skip
    task = client.submit(neutral, api_key=KEY, idempotency_key="rdj_1")
    assert (task.task_id, task.status) == ("task_1", TaskStatus.SUBMITTED)
    request = seen[0]
    assert str(request.url) == f"{BASE}/jobs/createTask"
    assert request.headers["Authorization"] == f"Bearer {KEY.get_secret_value()}"
    assert json.loads(request.content) == {
        "model": "seedance-20",
        "inputs": {"prompt": "a fox", "duration": "6"},
        "callBackUrl": "https://hooks.test/j/t",
    }


def test_polling_asks_record_info_by_task_id() -> None:
    seen: list[httpx.Request] = []
    client = client_answering(lambda r: httpx.Response(200, json=SUCCESS), seen)
    task = client.get_task("task_abc", api_key=KEY)
    assert str(seen[0].url) == f"{BASE}/jobs/recordInfo?taskId=task_abc"
    assert task.status is TaskStatus.SUCCEEDED and task.actual_cost == 1.0


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, BadRequest), (401, Unauthorized), (402, InsufficientCredits),
     (403, ModelForbidden), (429, RateLimited), (500, ErroredRequest)],
)  # fmt: skip
def test_kinovi_error_statuses_map_to_the_same_errors_with_the_message(
    status: int, error: type[Exception]
) -> None:
    body = {"message": f"said {status} for {KEY.get_secret_value()}"}
    client = client_answering(lambda r: httpx.Response(status, json=body))
    with pytest.raises(error) as info:
        client.submit({"model": "seedance-20", "prompt": "p", "seconds": "5"}, api_key=KEY)
    text = str(info.value)
    assert f"said {status}" in text
    assert KEY.get_secret_value() not in text  # an echoed key is scrubbed
    if status == 403:
        assert "API access is not enabled for this key" in text


def test_kinovi_403_to_a_read_of_another_keys_task_stays_permanent() -> None:
    body = {"message": "Access denied: you can only query your own tasks"}
    client = client_answering(lambda r: httpx.Response(403, json=body))
    with pytest.raises(Forbidden):
        client.get_task("task_abc", api_key=KEY)


def test_a_kinovi_500_in_its_own_json_is_an_errored_request_and_an_empty_502_is_not() -> None:
    own = client_answering(lambda r: httpx.Response(500, json={"message": "server error"}))
    with pytest.raises(ErroredRequest):
        own.submit({"model": "seedance-20", "prompt": "p", "seconds": "5"}, api_key=KEY)
    empty = client_answering(lambda r: httpx.Response(502))
    with pytest.raises(ServerError) as info:
        empty.submit({"model": "seedance-20", "prompt": "p", "seconds": "5"}, api_key=KEY)
    assert type(info.value) is ServerError


def test_a_local_file_can_never_be_uploaded_to_kinovi(tmp_path: Any) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 16)
    client = client_answering(lambda r: httpx.Response(500))
    with pytest.raises(NoUploadEndpoint, match="public https URLs"):
        client.upload(image, api_key=KEY)


def test_the_neutral_body_of_frames_and_references_becomes_urls_and_audio_urls() -> None:
    def entry(kind: str, url: str, role: str) -> dict[str, Any]:
        return {"type": f"{kind}_url", f"{kind}_url": {"url": url}, "role": role}

    frames = {"model": "seedance2-fast", "prompt": "", "seconds": "4", "metadata": {
        "content": [entry("image", "https://a/1.jpg", "first_frame"),
                    entry("image", "https://a/2.jpg", "last_frame")]}}  # fmt: skip
    assert submit_body(frames) == {
        "model": "seedance2-fast",
        "inputs": {"urls": ["https://a/1.jpg", "https://a/2.jpg"], "duration": "4"},
    }
    refs = {"model": "seedance-20", "prompt": "p", "seconds": "5", "metadata": {
        "ratio": "1:1", "resolution": "480p", "upscale": "4k",
        "content": [entry("image", "https://a/i.jpg", "reference_image"),
                    entry("video", "https://a/v.mp4", "reference_video"),
                    entry("audio", "https://a/s.mp3", "reference_audio")]}}  # fmt: skip
    assert submit_body(refs)["inputs"] == {
        "urls": ["https://a/i.jpg", "https://a/v.mp4"],
        "audioUrls": ["https://a/s.mp3"],
        "prompt": "p",
        "duration": "5",
        "aspectRatio": "1:1",
        "mode": "reference",
        "outputResolution": "480p",
        "upscaleResolution": "4k",
    }
