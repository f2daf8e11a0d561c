"""The provider client: the exact requests it sends and how every answer maps to a type."""

from __future__ import annotations

import json
from email.parser import BytesParser
from email.policy import HTTP

import pytest

from tests.unit.client.fakes import BODY, KEY, KEY_VALUE, SIGNED, answer
from worker.errors import InvalidRequest, UnexpectedResponse
from worker.provider.client import RemoteTask, TaskStatus

# Requests ----------------------------------------------------------------------------------


def test_submit_posts_the_body_with_bearer_auth_and_the_idempotency_key(make_client):
    client, seen = make_client(answer(200, {"task_id": "task_abc123", "status": "submitted"}))

    task = client.submit(BODY, api_key=KEY, idempotency_key="job-42")

    request = seen.last
    assert request.method == "POST"
    assert str(request.url) == "https://relaydance.test/v1/video/generations"
    assert request.headers["Authorization"] == f"Bearer {KEY_VALUE}"
    assert request.headers["Idempotency-Key"] == "job-42"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(seen.bodies[-1]) == BODY
    assert task.task_id == "task_abc123"
    assert task.status is TaskStatus.SUBMITTED
    assert not task.is_final


def test_submit_without_an_idempotency_key_sends_no_such_header(make_client):
    client, seen = make_client(answer(200, {"task_id": "t1", "status": "submitted"}))

    client.submit(BODY, api_key=KEY)

    assert "Idempotency-Key" not in seen.last.headers


def test_submit_response_without_a_task_id_is_an_unexpected_response(make_client):
    client, _ = make_client(answer(200, {"status": "submitted"}))

    with pytest.raises(UnexpectedResponse, match="no task_id"):
        client.submit(BODY, api_key=KEY)


def test_submit_response_with_only_a_task_id_counts_as_submitted(make_client):
    client, _ = make_client(answer(201, {"task_id": "t9"}))

    task = client.submit(BODY, api_key=KEY)

    assert task.status is TaskStatus.SUBMITTED


def test_get_task_reads_the_task_path_and_returns_a_succeeded_task(make_client):
    payload = {
        "task_id": "task_abc123",
        "status": "succeeded",
        "url": SIGNED,
        "format": "mp4",
        "metadata": {"ratio": "16:9", "resolution": "1080p"},
    }
    client, seen = make_client(answer(200, payload))

    task = client.get_task("task_abc123", api_key=KEY)

    assert seen.last.method == "GET"
    assert seen.last.url.path == "/v1/video/generations/task_abc123"
    assert seen.last.headers["Authorization"] == f"Bearer {KEY_VALUE}"
    assert task.status is TaskStatus.SUCCEEDED
    assert task.is_final
    assert task.url == SIGNED
    assert task.extra == {"format": "mp4", "metadata": {"ratio": "16:9", "resolution": "1080p"}}


def test_get_task_keeps_a_hostile_task_id_inside_one_path_segment(make_client):
    client, seen = make_client(answer(200, {"task_id": "../files?x=1", "status": "running"}))

    client.get_task("../files?x=1", api_key=KEY)

    assert seen.last.url.raw_path == b"/v1/video/generations/..%2Ffiles%3Fx%3D1"
    assert seen.last.url.query == b""


def test_get_task_fills_a_missing_task_id_and_refuses_another_tasks_answer(make_client):
    client, _ = make_client(answer(200, {"status": "running"}))
    assert client.get_task("t1", api_key=KEY).task_id == "t1"

    client, _ = make_client(answer(200, {"task_id": "someone-else", "status": "succeeded"}))
    with pytest.raises(UnexpectedResponse, match="someone-else"):
        client.get_task("t1", api_key=KEY)


def test_get_task_passes_on_a_retry_after_hint(make_client):
    client, _ = make_client(
        answer(200, {"task_id": "t1", "status": "running"}, headers={"Retry-After": "12"})
    )

    assert client.get_task("t1", api_key=KEY).retry_after == 12.0


def test_a_failed_task_is_returned_with_the_providers_reason(make_client):
    payload = {"task_id": "t1", "status": "failed", "error": {"message": "content policy"}}
    client, _ = make_client(answer(200, payload))

    task = client.get_task("t1", api_key=KEY)

    assert task.status is TaskStatus.FAILED
    assert task.is_final
    assert task.error == "content policy"


@pytest.mark.parametrize("status", ["queued", "processing", "", 7, None])
def test_an_unknown_status_is_tolerated_as_unknown_and_not_final(make_client, status):
    client, _ = make_client(answer(200, {"task_id": "t1", "status": status}))

    task = client.get_task("t1", api_key=KEY)

    assert task.status is TaskStatus.UNKNOWN
    assert not task.is_final
    assert task.raw_status == ("" if status is None else str(status))


def test_status_strings_are_read_case_insensitively(make_client):
    client, _ = make_client(answer(200, {"task_id": "t1", "status": " Running "}))

    assert client.get_task("t1", api_key=KEY).status is TaskStatus.RUNNING


def test_unknown_extra_fields_anywhere_are_tolerated_and_kept(make_client):
    payload = {
        "task_id": "t1",
        "status": "running",
        "progress": 0.4,
        "metadata": {"new_thing": [1, 2, {"deep": True}]},
        "usage": None,
    }
    client, _ = make_client(answer(200, payload))

    task = client.get_task("t1", api_key=KEY)

    assert task.extra == {
        "progress": 0.4,
        "metadata": {"new_thing": [1, 2, {"deep": True}]},
        "usage": None,
    }


def test_remote_task_repr_hides_the_signed_query_string_and_extra_values():
    task = RemoteTask(
        task_id="t1",
        status=TaskStatus.SUCCEEDED,
        url=SIGNED,
        raw_status="succeeded",
        extra={"metadata": {"callback_url": "https://hooks.test/job-1/tok3n-s3cret"}},
    )

    shown = repr(task)

    assert "deadbeefcafe" not in shown
    assert "X-Signature" not in shown
    assert "tok3n-s3cret" not in shown
    assert "cdn.relaydance.test/out/clip.mp4" in shown
    assert "t1" in shown


def test_upload_streams_the_file_bytes_under_multipart_field_file(make_client, tmp_path):
    content = bytes(range(256)) * 300 + b"\r\n--not-a-boundary\r\n"
    source = tmp_path / "portrait.png"
    source.write_bytes(content)
    client, seen = make_client(answer(200, {"url": "https://files.relaydance.test/u/1.png"}))

    url = client.upload(source, api_key=KEY)

    request = seen.last
    assert url == "https://files.relaydance.test/u/1.png"
    assert request.method == "POST"
    assert request.url.path == "/v1/files"
    assert request.headers["Authorization"] == f"Bearer {KEY_VALUE}"
    content_type = request.headers["Content-Type"]
    assert content_type.startswith("multipart/form-data; boundary=")
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + seen.bodies[-1]
    )
    parts = list(message.iter_parts())
    assert len(parts) == 1
    part = parts[0]
    assert part.get_param("name", header="content-disposition") == "file"
    assert part.get_filename() == "portrait.png"
    assert part.get_content_type() == "image/png"
    assert part.get_payload(decode=True) == content


def test_upload_uses_the_given_content_type(make_client, tmp_path):
    source = tmp_path / "voice.bin"
    source.write_bytes(b"ID3")
    client, seen = make_client(answer(200, {"url": "https://files.relaydance.test/u/2"}))

    client.upload(source, api_key=KEY, content_type="audio/mpeg")

    assert b"Content-Type: audio/mpeg" in seen.bodies[-1]


def test_upload_response_without_a_url_is_an_unexpected_response(make_client, tmp_path):
    source = tmp_path / "a.jpg"
    source.write_bytes(b"jpeg")
    client, _ = make_client(answer(200, {"id": "file_1"}))

    with pytest.raises(UnexpectedResponse, match="no url"):
        client.upload(source, api_key=KEY)


def test_upload_of_a_missing_file_is_refused_before_any_request(make_client, tmp_path):
    client, seen = make_client(answer(200, {"url": "https://x.test/1"}))

    with pytest.raises(InvalidRequest, match=r"missing\.png"):
        client.upload(tmp_path / "missing.png", api_key=KEY)
    assert seen.requests == []
