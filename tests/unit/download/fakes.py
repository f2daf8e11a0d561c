"""Fakes for the download's tests: a fake resolver, a recording transport, a chunk sink."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx

from worker.provider.download import Streamed, stream_video

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
