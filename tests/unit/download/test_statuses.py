"""The clip download: HTTP statuses and transport errors mapped to types, no signed URL in any message."""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from tests.unit.download.fakes import (
    GOOD,
    SECRET,
    Chunks,
    Collected,
    Handler,
    assert_nothing_written,
    client_for,
    fetch,
    mp4_bytes,
)
from worker.errors import (
    DownloadRejected,
    PermanentError,
    RateLimited,
    RetryableStatus,
    ServerError,
    TransientError,
    TransportFailure,
)
from worker.provider import download as download_module
from worker.provider.download import UrlExpired


def _refuse(request: httpx.Request) -> httpx.Response:
    # Some transports name the url in their message; it must not leak through.
    raise httpx.ConnectError(f"cannot connect to {request.url}", request=request)


@pytest.mark.parametrize("status", [403, 404, 410])
def test_an_expired_url_raises_url_expired_so_the_caller_refetches_the_task(
    fake_dns: None, sink: Collected, status: int
) -> None:
    client, _ = client_for(lambda request: httpx.Response(status, text="Request has expired"))

    with pytest.raises(UrlExpired) as caught:
        fetch(GOOD, client, sink)

    assert caught.value.code == "url_expired"
    assert caught.value.status_code == status
    assert isinstance(caught.value, PermanentError)
    assert_nothing_written(sink)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_server_error_is_transient(fake_dns: None, sink: Collected, status: int) -> None:
    client, _ = client_for(lambda request: httpx.Response(status))

    with pytest.raises(ServerError):
        fetch(GOOD, client, sink)

    assert_nothing_written(sink)


@pytest.mark.parametrize("status", [408, 409])
def test_a_request_timeout_or_conflict_is_transient(
    fake_dns: None, sink: Collected, status: int
) -> None:
    client, _ = client_for(lambda request: httpx.Response(status))

    with pytest.raises(RetryableStatus) as caught:
        fetch(GOOD, client, sink)

    assert isinstance(caught.value, TransientError)
    assert caught.value.status_code == status
    assert_nothing_written(sink)


def test_a_429_is_rate_limited_with_the_servers_retry_after(
    fake_dns: None, sink: Collected
) -> None:
    client, _ = client_for(lambda request: httpx.Response(429, headers={"Retry-After": "7"}))

    with pytest.raises(RateLimited) as caught:
        fetch(GOOD, client, sink)

    assert caught.value.retry_after == 7.0


def test_a_429_reads_an_http_date_retry_after_as_the_api_client_does(
    fake_dns: None, sink: Collected
) -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    client, _ = client_for(lambda request: httpx.Response(429, headers={"Retry-After": later}))

    with pytest.raises(RateLimited) as caught:
        fetch(GOOD, client, sink)

    assert caught.value.retry_after is not None and 60 < caught.value.retry_after <= 120


def test_another_status_is_rejected(fake_dns: None, sink: Collected) -> None:
    client, _ = client_for(lambda request: httpx.Response(206, content=mp4_bytes()))

    with pytest.raises(DownloadRejected, match="206"):
        fetch(GOOD, client, sink)


def test_a_connection_error_becomes_a_transport_failure(fake_dns: None, sink: Collected) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client, _ = client_for(handler)

    with pytest.raises(TransportFailure):
        fetch(GOOD, client, sink)

    assert_nothing_written(sink)


def test_a_read_timeout_mid_body_is_a_transport_failure_after_the_bytes_so_far(
    fake_dns: None, sink: Collected
) -> None:
    def chunks() -> Iterator[bytes]:
        yield mp4_bytes(8192)
        raise httpx.ReadTimeout("timed out")

    client, _ = client_for(lambda request: httpx.Response(200, stream=Chunks(chunks())))

    with pytest.raises(TransportFailure, match="timed out"):
        fetch(GOOD, client, sink, chunk_size=4096)

    assert sink.data == mp4_bytes(8192)  # the opener of the sink discards them


def test_the_overall_deadline_ends_a_slow_download(
    fake_dns: None, sink: Collected, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Clock:
        now = 1000.0

        @classmethod
        def monotonic(cls) -> float:
            return cls.now

    def chunks() -> Iterator[bytes]:
        yield mp4_bytes(1024)
        for _ in range(100):
            Clock.now += 1.0  # every chunk takes a second
            yield b"\x00" * 1024

    monkeypatch.setattr(download_module, "time", Clock)
    stream = Chunks(chunks())
    client, _ = client_for(lambda request: httpx.Response(200, stream=stream))

    with pytest.raises(TransportFailure, match="deadline"):
        fetch(GOOD, client, sink, overall_timeout=5.0, chunk_size=1024)

    assert stream.pulled < 10


@pytest.mark.parametrize(
    "handler",
    [
        lambda request: httpx.Response(403),
        lambda request: httpx.Response(503),
        lambda request: httpx.Response(200, content=b"not a video"),
        lambda request: httpx.Response(302, headers={"Location": f"https://10.0.0.1/?{SECRET}"}),
        _refuse,
    ],
    ids=["expired", "5xx", "not-mp4", "private-redirect", "transport"],
)
def test_the_signed_query_never_appears_in_an_error_or_its_traceback(
    fake_dns: None, sink: Collected, handler: Handler
) -> None:
    client, _ = client_for(handler)

    with pytest.raises(Exception) as caught:  # each case raises its own class
        fetch(GOOD, client, sink)

    text = "".join(traceback.format_exception(caught.value))
    assert "s3cr3tsig" not in text
    assert "cdn.example.com" in str(caught.value) or "10.0.0.1" in str(caught.value)
    assert not isinstance(caught.value, httpx.HTTPError)
