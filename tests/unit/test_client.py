"""The provider client: the exact requests it sends and how every answer maps to a type."""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from email.parser import BytesParser
from email.policy import HTTP
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from config.settings import Settings
from worker.errors import (
    AccountFault,
    BadRequest,
    ErroredRequest,
    Forbidden,
    InsufficientCredits,
    InvalidRequest,
    KeyForbidden,
    ModelForbidden,
    NotFound,
    PermanentError,
    RateLimited,
    RelayDanceError,
    RetryableStatus,
    ServerError,
    TransientError,
    TransportFailure,
    Unauthorized,
    UnexpectedResponse,
)
from worker.provider.client import ApiClient, RemoteTask, TaskStatus, parse_retry_after
from worker.provider.dialects import Endpoint, get_dialect, known_dialects
from worker.provider.dialects.relaydance import error_message

KEY_VALUE = "sk-live-7f3a9c2e5b1d4e6f8a0b"
KEY = SecretStr(KEY_VALUE)
BASE = "https://relaydance.test/v1"
SIGNED = "https://cdn.relaydance.test/out/clip.mp4?X-Signature=deadbeefcafe&Expires=99"
BODY = {
    "model": "doubao-seedance-2-0-1080p",
    "prompt": "A dancer spins in golden hour light, cinematic",
    "seconds": "10",
    "metadata": {"ratio": "16:9", "resolution": "1080p", "generate_audio": True},
}

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler that answers with ``respond`` and keeps every request."""

    def __init__(self, respond: Handler) -> None:
        self.respond = respond
        self.requests: list[httpx.Request] = []
        self.bodies: list[bytes] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(request.read())
        self.requests.append(request)
        return self.respond(request)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


def answer(status: int = 200, payload: Any = None, **kwargs: Any) -> Handler:
    def respond(request: httpx.Request) -> httpx.Response:
        if payload is None:
            return httpx.Response(status, **kwargs)
        return httpx.Response(status, json=payload, **kwargs)

    return respond


@pytest.fixture
def make_client() -> Iterator[Callable[[Handler], tuple[ApiClient, Recorder]]]:
    made: list[ApiClient] = []

    def make(respond: Handler) -> tuple[ApiClient, Recorder]:
        recorder = Recorder(respond)
        client = ApiClient(base_url=BASE, transport=httpx.MockTransport(recorder))
        made.append(client)
        return client, recorder

    yield make
    for client in made:
        client.close()


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


# Error mapping -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected", "code"),
    [
        (401, Unauthorized, "unauthorized"),
        (402, InsufficientCredits, "insufficient_credits"),
        (403, Forbidden, "forbidden"),
        (404, NotFound, "not_found"),
        (500, ErroredRequest, "errored_request"),
        (502, ErroredRequest, "errored_request"),
        (503, ErroredRequest, "errored_request"),
        (408, RetryableStatus, "retryable_status"),
        (409, RetryableStatus, "retryable_status"),
        (418, PermanentError, "http_418"),
        (302, UnexpectedResponse, "unexpected_response"),
    ],
)
def test_each_http_status_maps_to_its_error(make_client, status, expected, code):
    client, _ = make_client(answer(status, {"error": {"message": "provider says no"}}))

    with pytest.raises(RelayDanceError) as caught:
        client.get_task("t1", api_key=KEY)

    assert type(caught.value) is expected
    assert caught.value.code == code
    assert caught.value.status_code == status
    assert str(caught.value) == (f"GET /v1/video/generations/t1 -> HTTP {status}: provider says no")


def test_server_errors_are_transient_and_account_errors_pause_instead_of_failing(make_client):
    client, _ = make_client(answer(503))
    with pytest.raises(TransientError):
        client.submit(BODY, api_key=KEY)
    client, _ = make_client(answer(401))
    with pytest.raises(AccountFault) as caught:
        client.submit(BODY, api_key=KEY)
    assert not isinstance(caught.value, PermanentError)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        # The provider's own error JSON: the request errored and was not billed.
        ({"json": {"error": {"message": "upstream busy", "type": "server_error"}}},
         ErroredRequest),
        # A gateway's page, an empty reply, JSON of another shape, or JSON sent as text:
        # nothing says what happened behind the gateway.
        ({"text": "<html><body><h1>502 Bad Gateway</h1></body></html>",
          "headers": {"content-type": "text/html"}}, ServerError),
        ({}, ServerError),
        ({"json": {"message": "Internal server error"}}, ServerError),
        ({"content": b'{"error": {"message": "x"}}', "headers": {"content-type": "text/plain"}},
         ServerError),
    ],
)  # fmt: skip
@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_only_the_providers_own_5xx_json_says_the_submission_was_not_billed(
    make_client, status, reply, expected
):
    client, _ = make_client(lambda request: httpx.Response(status, **reply))

    with pytest.raises(ServerError) as caught:
        client.submit(BODY, api_key=KEY)

    assert type(caught.value) is expected


@pytest.mark.parametrize(
    ("message", "on_submit", "on_read"),
    [
        ("Insufficient balance, please top up", InsufficientCredits, InsufficientCredits),
        ("quota exceeded for this account", InsufficientCredits, InsufficientCredits),
        ("this key may not use model doubao-seedance-2-0-1080p", ModelForbidden, ModelForbidden),
        ("API access not enabled", KeyForbidden, KeyForbidden),
        ("you can only query your own tasks", Forbidden, Forbidden),
        # Nothing said: a submission pauses only its model first; a read stays permanent.
        ("forbidden", ModelForbidden, Forbidden),
        ("", ModelForbidden, Forbidden),
    ],
)
def test_a_403_is_read_by_its_message_and_an_unexplained_one_pauses_the_narrower_scope(
    make_client, message, on_submit, on_read
):
    client, _ = make_client(answer(403, {"error": {"message": message, "type": "forbidden"}}))

    with pytest.raises(RelayDanceError) as submitted:
        client.submit(BODY, api_key=KEY)
    with pytest.raises(RelayDanceError) as read:
        client.get_task("t1", api_key=KEY)

    assert type(submitted.value) is on_submit
    assert type(read.value) is on_read


@pytest.mark.parametrize(
    "body",
    [
        {"json": {"error": {"message": "seconds must be a string", "type": "invalid"}}},
        {"json": {"error": "seconds must be a string"}},
        {"json": {"message": "seconds must be a string"}},
        {"json": {"detail": "seconds must be a string"}},
        {"json": {"detail": [{"msg": "seconds must be a string", "loc": ["seconds"]}]}},
        {"text": "seconds must be a string"},
    ],
)
def test_bad_request_carries_the_providers_message(make_client, body):
    client, _ = make_client(lambda request: httpx.Response(400, **body))

    with pytest.raises(BadRequest) as caught:
        client.submit(BODY, api_key=KEY)

    assert str(caught.value) == ("POST /v1/video/generations -> HTTP 400: seconds must be a string")
    assert caught.value.message == str(caught.value)


@pytest.mark.parametrize(
    "body",
    [
        {"json": {"error": 42}},
        {"json": {"error": None, "message": ["x"]}},
        {"json": [1, 2]},
        {"json": "   "},
        {"content": b""},
        {"content": b"\xff\xfe\x00garbage"},
    ],
)
def test_an_error_body_of_any_shape_still_maps_to_the_status(make_client, body):
    client, _ = make_client(lambda request: httpx.Response(400, **body))

    with pytest.raises(BadRequest) as caught:
        client.submit(BODY, api_key=KEY)

    assert str(caught.value).startswith("POST /v1/video/generations -> HTTP 400")


def test_a_long_html_error_page_is_cut_short(make_client):
    page = "<html><body>" + "Bad Gateway " * 1000 + "</body></html>"
    client, _ = make_client(lambda request: httpx.Response(502, text=page))

    with pytest.raises(ServerError) as caught:
        client.get_task("t1", api_key=KEY)

    assert len(str(caught.value)) < 600


def test_rate_limited_reads_numeric_retry_after(make_client):
    client, _ = make_client(answer(429, {"error": "too many tasks"}, headers={"Retry-After": "7"}))

    with pytest.raises(RateLimited) as caught:
        client.submit(BODY, api_key=KEY)

    assert caught.value.retry_after == 7.0
    assert caught.value.status_code == 429
    assert "too many tasks" in str(caught.value)


def test_rate_limited_reads_an_http_date_retry_after(make_client):
    when = datetime.now(UTC) + timedelta(hours=1)
    client, _ = make_client(
        answer(429, {}, headers={"Retry-After": format_datetime(when, usegmt=True)})
    )

    with pytest.raises(RateLimited) as caught:
        client.submit(BODY, api_key=KEY)

    # The date has one-second resolution and some time passes: about an hour is right.
    assert caught.value.retry_after is not None
    assert 3000 < caught.value.retry_after <= 3600


@pytest.mark.parametrize("headers", [{}, {"Retry-After": "soon"}, {"Retry-After": "-5"}])
def test_rate_limited_without_a_usable_retry_after_has_none(make_client, headers):
    client, _ = make_client(answer(429, {}, headers=headers))

    with pytest.raises(RateLimited) as caught:
        client.submit(BODY, api_key=KEY)

    assert caught.value.retry_after is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # already past: go now
        (None, None),
        ("", None),
        ("nan", None),
        ("inf", None),
        ("-1", None),
        ("Wed, 99 Foo 2015", None),
    ],
)
def test_parse_retry_after(value, expected):
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)

    assert parse_retry_after(value, now=now) == expected


def test_a_timeout_becomes_a_transport_failure(make_client):
    def respond(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    client, _ = make_client(respond)

    with pytest.raises(TransportFailure, match=r"POST /v1/video/generations: timed out"):
        client.submit(BODY, api_key=KEY)


@pytest.mark.parametrize("error", [httpx.ConnectError, httpx.RemoteProtocolError])
def test_a_connection_error_becomes_a_transport_failure(make_client, error):
    def respond(request: httpx.Request) -> httpx.Response:
        raise error("[Errno 111] Connection refused", request=request)

    client, _ = make_client(respond)

    with pytest.raises(TransportFailure, match="Connection refused") as caught:
        client.get_task("t1", api_key=KEY)
    assert isinstance(caught.value, TransientError)


def test_a_real_refused_connection_becomes_a_transport_failure():
    from worker.infra.redis_server import free_port

    with ApiClient(base_url=f"http://127.0.0.1:{free_port()}/v1", connect_timeout=2) as client:
        with pytest.raises(TransportFailure):
            client.get_task("t1", api_key=KEY)


@pytest.mark.parametrize("content", [b"not json", b"", b'{"task_id": '])
def test_invalid_json_is_an_unexpected_response(make_client, content):
    client, _ = make_client(lambda request: httpx.Response(200, content=content))

    with pytest.raises(UnexpectedResponse, match="not valid JSON"):
        client.get_task("t1", api_key=KEY)


def test_a_json_response_that_is_not_an_object_is_an_unexpected_response(make_client):
    client, _ = make_client(answer(200, ["task_id", "t1"]))

    with pytest.raises(UnexpectedResponse, match="not a JSON object"):
        client.submit(BODY, api_key=KEY)


# Secrets -----------------------------------------------------------------------------------


def _raise(exc: type[httpx.RequestError]) -> Handler:
    def respond(request: httpx.Request) -> httpx.Response:
        raise exc("failed", request=request)

    return respond


SCENARIOS: dict[str, Handler] = {
    "400 empty": answer(400),
    "400 echoing the key": lambda r: httpx.Response(
        400, json={"error": {"message": f"bad key {r.headers['Authorization']}"}}
    ),
    "401 echoing the key": lambda r: httpx.Response(401, text=f"invalid api key {KEY_VALUE}"),
    "402": answer(402),
    "403": answer(403),
    "404": answer(404),
    "429": answer(429, headers={"Retry-After": "3"}),
    "500": answer(500),
    "timeout": _raise(httpx.ConnectTimeout),
    "connect error": _raise(httpx.ConnectError),
    "invalid json": lambda r: httpx.Response(200, content=b"<html>"),
    "no task id": answer(200, {"status": "submitted"}),
}


@pytest.mark.parametrize("respond", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_no_error_shows_the_key_or_an_httpx_type(make_client, respond):
    client, _ = make_client(respond)

    with pytest.raises(RelayDanceError) as caught:
        client.submit(BODY, api_key=KEY, idempotency_key="job-1")

    error = caught.value
    shown = "".join(traceback.format_exception(error)) + str(error) + repr(error)
    assert KEY_VALUE not in shown
    assert "Authorization" not in shown
    assert not isinstance(error, httpx.HTTPError)
    # The httpx exception holds the request and its headers: it must not hang off ours.
    chained = error.__cause__ or error.__context__
    while chained is not None:
        assert not isinstance(chained, httpx.HTTPError)
        chained = chained.__cause__ or chained.__context__


def test_requests_are_logged_at_debug_without_the_key(make_client, caplog):
    client, _ = make_client(answer(200, {"task_id": "t1", "status": "running"}))
    caplog.set_level(logging.DEBUG, logger="worker.provider.client")

    client.get_task("t1", api_key=KEY)

    lines = [r.getMessage() for r in caplog.records if r.name == "worker.provider.client"]
    assert len(lines) == 1
    assert lines[0].startswith("GET /v1/video/generations/t1 -> 200 in ")
    assert lines[0].endswith(" ms")
    assert KEY_VALUE not in caplog.text


def test_client_repr_shows_no_key(make_client):
    client, _ = make_client(answer(200, {}))

    assert repr(client) == f"ApiClient(base_url='{BASE}', dialect='relaydance')"


# Dialects, construction and the per-process client -----------------------------------------


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


def test_an_echoed_key_is_scrubbed_even_where_a_long_message_is_cut(make_client):
    message = "x" * 485 + f" key {KEY_VALUE} was refused"
    client, _ = make_client(answer(401, {"error": {"message": message}}))

    with pytest.raises(Unauthorized) as caught:
        client.get_task("t1", api_key=KEY)

    assert KEY_VALUE[:6] not in str(caught.value)
