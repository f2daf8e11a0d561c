"""The provider client: how every error status, Retry-After and transport failure maps to a type."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from tests.unit.client.fakes import BODY, KEY, answer
from worker.errors import (
    AccountFault,
    BadRequest,
    ErroredRequest,
    Forbidden,
    InsufficientCredits,
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
from worker.provider.client import ApiClient, parse_retry_after


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
