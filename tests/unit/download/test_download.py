"""The clip download: SSRF rules, manual redirects, caps, mp4 check, hashing, into any sink.

The sink here is a list of chunks with a ``write`` method and nothing else: the download
knows no storage. What a storage does with a failed download's bytes (nothing visible,
nothing left) is tested with each storage (tests/unit/test_storage_local.py,
tests/integration/test_storage.py).
"""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator

import httpx
import pytest

from tests.unit.download.fakes import (
    CAP,
    GOOD,
    Chunks,
    Collected,
    assert_nothing_written,
    client_for,
    fetch,
    mp4_bytes,
)
from worker.errors import DownloadRejected, UnsafeUrl
from worker.provider.download import MAX_REDIRECTS, make_download_client, stream_video

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
