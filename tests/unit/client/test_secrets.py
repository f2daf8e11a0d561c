"""The provider client: no error, log line or repr shows the key or an httpx type."""

from __future__ import annotations

import logging
import traceback

import httpx
import pytest

from tests.unit.client.fakes import BASE, BODY, KEY, KEY_VALUE, Handler, answer
from worker.errors import RelayDanceError, Unauthorized


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


def test_an_echoed_key_is_scrubbed_even_where_a_long_message_is_cut(make_client):
    message = "x" * 485 + f" key {KEY_VALUE} was refused"
    client, _ = make_client(answer(401, {"error": {"message": message}}))

    with pytest.raises(Unauthorized) as caught:
        client.get_task("t1", api_key=KEY)

    assert KEY_VALUE[:6] not in str(caught.value)
