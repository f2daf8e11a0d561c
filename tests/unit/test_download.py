"""The clip download: SSRF rules, manual redirects, caps, mp4 check, hashing, into any sink.

The sink here is a list of chunks with a ``write`` method and nothing else: the download
knows no storage. What a storage does with a failed download's bytes (nothing visible,
nothing left) is tested with each storage (tests/unit/test_storage_local.py,
tests/integration/test_storage.py).
"""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from worker.errors import (
    DownloadRejected,
    PermanentError,
    RateLimited,
    RetryableStatus,
    ServerError,
    TransientError,
    TransportFailure,
    UnsafeUrl,
)
from worker.provider import download as download_module
from worker.provider.download import (
    MAX_REDIRECTS,
    Streamed,
    UrlExpired,
    make_download_client,
    stream_video,
)
from worker.provider.urlsafety import check_url, redact_url

SECRET = "X-Amz-Signature=s3cr3tsig0123"
GOOD = f"https://cdn.example.com/out/clip.mp4?{SECRET}&X-Amz-Expires=600"
CAP = 1 << 20

# A fake resolver: tests never touch real DNS.
DNS = {
    "cdn.example.com": ["93.184.216.34"],
    "mirror.example.com": ["2606:4700:4700::1111"],
    "internal.example.com": ["10.0.0.7"],
    "split.example.com": ["93.184.216.34", "192.168.1.20"],
    "metadata.example.com": ["169.254.169.254"],
}


def mp4_bytes(size: int = 4096) -> bytes:
    """Bytes that open with an ISO-BMFF ftyp box, padded to ``size``."""
    head = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
    return head + bytes(i % 251 for i in range(size - len(head)))


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    def getaddrinfo(
        host: str, port: int, *args: object, **kwargs: object
    ) -> list[tuple[object, ...]]:
        if host not in DNS:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        out: list[tuple[object, ...]] = []
        for addr in DNS[host]:
            family = socket.AF_INET6 if ":" in addr else socket.AF_INET
            sockaddr = (addr, port, 0, 0) if family == socket.AF_INET6 else (addr, port)
            out.append((family, socket.SOCK_STREAM, 6, "", sockaddr))
        return out

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler that remembers every URL it was asked for."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.urls: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.urls.append(str(request.url))
        return self.handler(request)


def client_for(handler: Handler, **kwargs: object) -> tuple[httpx.Client, Recorder]:
    recorder = Recorder(handler)
    return httpx.Client(transport=httpx.MockTransport(recorder), **kwargs), recorder  # type: ignore[arg-type]


class Collected:
    """A sink that keeps what it is given, and has nothing but ``write``."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes, /) -> None:
        self.chunks.append(data)

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


@pytest.fixture
def sink() -> Collected:
    return Collected()


def fetch(url: str, client: httpx.Client, sink: Collected, **overrides: object) -> Streamed:
    options: dict[str, object] = {
        "client": client,
        "max_bytes": CAP,
        "allow_local": False,
        "overall_timeout": 60.0,
    }
    options.update(overrides)
    return stream_video(url, sink, **options)  # type: ignore[arg-type]


def assert_nothing_written(sink: Collected) -> None:
    """After a refusal: not one byte of the body reached the sink."""
    assert sink.chunks == []


class Chunks(httpx.SyncByteStream):
    """A response body produced chunk by chunk, counting how many were pulled."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.pulled = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.pulled += 1
            yield chunk


# --- the happy path ----------------------------------------------------------------


def test_download_streams_the_whole_clip_into_the_sink_with_its_size_and_sha256(
    fake_dns: None, sink: Collected
) -> None:
    body = mp4_bytes(200_000)
    client, _ = client_for(lambda request: httpx.Response(200, content=body))

    result = fetch(GOOD, client, sink, chunk_size=4096)

    assert sink.data == body
    assert max(len(c) for c in sink.chunks) == 4096  # streamed, one chunk at a time
    assert result.size == len(body)
    assert result.sha256 == hashlib.sha256(body).hexdigest()


def test_an_error_of_the_sink_passes_through_unchanged_and_ends_the_download(
    fake_dns: None,
) -> None:
    class Full(Exception):
        pass

    class FullAfterTwo(Collected):
        def write(self, data: bytes, /) -> None:
            if len(self.chunks) == 2:
                raise Full("no space left")
            super().write(data)

    stream = Chunks(iter([mp4_bytes(1024)] + [b"\x00" * 1024] * 50))
    client, _ = client_for(lambda request: httpx.Response(200, stream=stream))
    full = FullAfterTwo()

    with pytest.raises(Full, match="no space left"):
        fetch(GOOD, client, full, chunk_size=1024)

    assert len(full.chunks) == 2 and stream.pulled == 3


def test_progress_is_told_after_every_chunk_and_what_it_raises_ends_the_download(
    fake_dns: None, sink: Collected
) -> None:
    class Superseded(Exception):
        pass

    seen: list[int] = []

    def progress(size: int) -> None:
        seen.append(size)
        if size >= 3 * 1024:
            raise Superseded

    client, _ = client_for(lambda request: httpx.Response(200, content=mp4_bytes(10 * 1024)))

    with pytest.raises(Superseded):
        fetch(GOOD, client, sink, chunk_size=1024, on_progress=progress)

    assert seen == [1024, 2048, 3072] and len(sink.data) == 3072


def test_ftyp_check_holds_when_the_header_arrives_one_byte_at_a_time(
    fake_dns: None, sink: Collected
) -> None:
    body = mp4_bytes(64)
    stream = Chunks(iter([bytes([b]) for b in body]))
    client, _ = client_for(lambda request: httpx.Response(200, stream=stream))

    fetch(GOOD, client, sink)

    assert sink.data == body


def test_download_follows_a_redirect_chain_to_a_good_url(fake_dns: None, sink: Collected) -> None:
    body = mp4_bytes()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "cdn.example.com":
            return httpx.Response(302, headers={"Location": "https://mirror.example.com/a"})
        if request.url.path == "/a":
            return httpx.Response(307, headers={"Location": "/b?sig=2"})  # relative
        return httpx.Response(200, content=body)

    client, seen = client_for(handler)

    fetch(GOOD, client, sink)

    assert sink.data == body
    assert seen.urls[1:] == ["https://mirror.example.com/a", "https://mirror.example.com/b?sig=2"]


def test_download_accepts_exactly_five_redirects(fake_dns: None, sink: Collected) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        hop = int(request.url.params.get("hop", "0"))
        if hop < MAX_REDIRECTS:
            return httpx.Response(302, headers={"Location": f"/next?hop={hop + 1}"})
        return httpx.Response(200, content=mp4_bytes())

    client, seen = client_for(handler)

    fetch(GOOD, client, sink)

    assert len(seen.urls) == MAX_REDIRECTS + 1


# --- SSRF --------------------------------------------------------------------------


def test_download_refuses_more_than_five_redirects(fake_dns: None, sink: Collected) -> None:
    client, seen = client_for(
        lambda request: httpx.Response(302, headers={"Location": "https://cdn.example.com/again"})
    )

    with pytest.raises(UnsafeUrl, match="redirects"):
        fetch(GOOD, client, sink)

    assert len(seen.urls) == MAX_REDIRECTS + 1
    assert_nothing_written(sink)


@pytest.mark.parametrize(
    "location",
    [
        "https://10.0.0.5/clip.mp4",
        "https://internal.example.com/clip.mp4",
        "https://metadata.example.com/latest/meta-data/",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::ffff:127.0.0.1]/clip.mp4",
        "https://split.example.com/clip.mp4",
        "http://cdn.example.com/clip.mp4",
    ],
)
def test_download_refuses_a_redirect_to_an_unsafe_url_without_requesting_it(
    fake_dns: None, sink: Collected, location: str
) -> None:
    client, seen = client_for(lambda request: httpx.Response(301, headers={"Location": location}))

    with pytest.raises(UnsafeUrl):
        fetch(GOOD, client, sink)

    assert seen.urls == [GOOD]
    assert_nothing_written(sink)


def test_redirects_are_rechecked_even_on_a_client_that_follows_redirects(
    fake_dns: None, sink: Collected
) -> None:
    client, seen = client_for(
        lambda request: httpx.Response(302, headers={"Location": "https://10.0.0.5/x"}),
        follow_redirects=True,
    )

    with pytest.raises(UnsafeUrl):
        fetch(GOOD, client, sink)

    assert seen.urls == [GOOD]


def test_download_refuses_http_unless_local_urls_are_allowed(
    fake_dns: None, sink: Collected
) -> None:
    client, seen = client_for(lambda request: httpx.Response(200, content=mp4_bytes()))

    with pytest.raises(UnsafeUrl, match="scheme"):
        fetch("http://cdn.example.com/clip.mp4", client, sink)

    assert seen.urls == []
    assert fetch("http://cdn.example.com/clip.mp4", client, sink, allow_local=True).size


def test_download_refuses_a_loopback_url_before_connecting(fake_dns: None, sink: Collected) -> None:
    client, seen = client_for(lambda request: httpx.Response(200, content=mp4_bytes()))

    with pytest.raises(UnsafeUrl, match="loopback"):
        fetch("https://127.0.0.1:8443/clip.mp4", client, sink)

    assert seen.urls == []
    assert_nothing_written(sink)


# --- size cap and content checks ---------------------------------------------------


def test_download_refuses_a_declared_size_over_the_cap_without_reading_the_body(
    fake_dns: None, sink: Collected
) -> None:
    stream = Chunks(iter([mp4_bytes(1024)]))
    client, _ = client_for(
        lambda request: httpx.Response(200, headers={"Content-Length": str(CAP + 1)}, stream=stream)
    )

    with pytest.raises(DownloadRejected, match="cap"):
        fetch(GOOD, client, sink)

    assert stream.pulled == 0
    assert_nothing_written(sink)


def test_download_stops_reading_a_body_without_length_once_it_passes_the_cap(
    fake_dns: None, sink: Collected
) -> None:
    # Bounded so a broken cap fails the test instead of filling the disk.
    stream = Chunks(iter([mp4_bytes(1024)] + [b"\x00" * 65536] * 10_000))
    client, _ = client_for(lambda request: httpx.Response(200, stream=stream))

    with pytest.raises(DownloadRejected, match="cap"):
        fetch(GOOD, client, sink)

    assert stream.pulled <= CAP // 65536 + 2
    assert len(sink.data) <= CAP  # the chunk that crosses the cap is never written


def test_download_accepts_a_clip_of_exactly_the_cap(fake_dns: None, sink: Collected) -> None:
    client, _ = client_for(lambda request: httpx.Response(200, content=mp4_bytes(CAP)))

    assert fetch(GOOD, client, sink).size == CAP


@pytest.mark.parametrize(
    "body",
    [b"<html><body>AccessDenied</body></html>", b"\x1aE\xdf\xa3" + b"\x00" * 64, b"\x00\x00"],
    ids=["html", "webm", "too-short"],
)
def test_download_rejects_a_body_that_is_not_an_mp4(
    fake_dns: None, sink: Collected, body: bytes
) -> None:
    client, _ = client_for(lambda request: httpx.Response(200, content=body))

    with pytest.raises(DownloadRejected, match="mp4"):
        fetch(GOOD, client, sink)

    # A head long enough to judge is judged before it is written; a shorter one may be.
    assert sink.data == (body if len(body) < 8 else b"")


# --- HTTP statuses and transport errors --------------------------------------------


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


# --- no signed url in any message --------------------------------------------------


def _refuse(request: httpx.Request) -> httpx.Response:
    # Some transports name the url in their message; it must not leak through.
    raise httpx.ConnectError(f"cannot connect to {request.url}", request=request)


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


# --- urlsafety ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("[::1]", "loopback"),
        ("localhost", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("[fd00::1]", "private"),
        ("169.254.169.254", "metadata"),
        ("169.254.1.1", "link-local"),
        ("[fe80::1]", "link-local"),
        ("[fec0::1]", "site-local"),
        ("224.0.0.1", "multicast"),
        ("[ff02::1]", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("0.0.0.0", "unspecified"),
        ("[::]", "unspecified"),
        ("100.64.0.1", "CGNAT"),
        ("[::ffff:127.0.0.1]", "loopback"),
        ("[::ffff:a9fe:a9fe]", "metadata"),
        ("[2002:7f00:1::1]", "loopback"),
        ("[64:ff9b::a00:1]", "private"),
        ("2130706433", "loopback"),
        ("0x7f000001", "loopback"),
        ("127.1", "loopback"),
        ("0177.0.0.1", "loopback|malformed"),
    ],
)
def test_check_url_refuses_every_non_global_address_class(host: str, reason: str) -> None:
    with pytest.raises(UnsafeUrl, match=reason):
        check_url(f"https://{host}/clip.mp4?{SECRET}", allow_local=False)


@pytest.mark.parametrize(
    "url",
    [
        "https://93.184.216.34/clip.mp4",
        "https://[2606:4700:4700::1111]/clip.mp4",
        "https://cdn.example.com/clip.mp4",
        "https://mirror.example.com:8443/clip.mp4",
    ],
)
def test_check_url_accepts_https_to_global_addresses(fake_dns: None, url: str) -> None:
    check_url(url, allow_local=False)


def test_check_url_refuses_a_name_when_any_of_its_addresses_is_private(fake_dns: None) -> None:
    with pytest.raises(UnsafeUrl, match=r"192\.168\.1\.20"):
        check_url("https://split.example.com/clip.mp4", allow_local=False)


def test_check_url_reports_an_unresolvable_name_as_transient(fake_dns: None) -> None:
    with pytest.raises(TransportFailure, match="resolve"):
        check_url(f"https://nowhere.example.com/clip.mp4?{SECRET}", allow_local=False)


@pytest.mark.parametrize(
    "url",
    ["ftp://cdn.example.com/clip.mp4", "file:///etc/passwd", "https:///clip.mp4", "not a url"],
)
def test_check_url_refuses_other_schemes_and_missing_hosts_even_when_local_is_allowed(
    url: str,
) -> None:
    with pytest.raises(UnsafeUrl):
        check_url(url, allow_local=True)


def test_check_url_allows_http_and_loopback_for_local_development() -> None:
    check_url("http://127.0.0.1:8000/clip.mp4", allow_local=True)
    check_url("https://[::1]/clip.mp4", allow_local=True)


def test_check_url_refusals_do_not_show_the_query() -> None:
    with pytest.raises(UnsafeUrl) as caught:
        check_url(f"http://10.0.0.1/a/clip.mp4?{SECRET}#frag", allow_local=False)

    assert "s3cr3tsig" not in str(caught.value)
    assert "http://10.0.0.1/a/clip.mp4" in str(caught.value)


def test_redact_url_keeps_scheme_host_port_and_path_only() -> None:
    assert redact_url(f"https://user:pw@cdn.example.com:8443/a/b.mp4?{SECRET}#t=1") == (
        "https://cdn.example.com:8443/a/b.mp4"
    )
    assert redact_url("https://[::1]/x?y=1") == "https://[::1]/x"
    assert len(redact_url("https://h/" + "p" * 500)) < 120
    assert redact_url("https://[broken/x?sig=1") == "<unparseable url>"


# --- real HTTP on 127.0.0.1 --------------------------------------------------------

REAL_BODY = mp4_bytes(300_000)


class _ClipHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", "/clip.mp4?sig=abc")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(len(REAL_BODY)))
        self.end_headers()
        self.wfile.write(REAL_BODY)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def clip_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ClipHandler)
    # Polled often, so that the shutdown at the test's end takes milliseconds, not 0.5 s.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_real_http_download_from_a_local_server(clip_server: str, sink: Collected) -> None:
    with make_download_client(connect_timeout=5, read_timeout=5) as client:
        result = stream_video(
            f"{clip_server}/redirect?sig=xyz",
            sink,
            client=client,
            max_bytes=CAP,
            allow_local=True,
            overall_timeout=30,
        )

    assert sink.data == REAL_BODY
    assert result.sha256 == hashlib.sha256(REAL_BODY).hexdigest()


def test_a_real_local_server_is_refused_when_local_urls_are_not_allowed(
    clip_server: str, sink: Collected
) -> None:
    with make_download_client(connect_timeout=5, read_timeout=5) as client:
        assert client.follow_redirects is False
        with pytest.raises(UnsafeUrl):
            stream_video(
                f"{clip_server.replace('http:', 'https:')}/clip.mp4",
                sink,
                client=client,
                max_bytes=CAP,
                allow_local=False,
                overall_timeout=30,
            )

    assert_nothing_written(sink)
