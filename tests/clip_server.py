"""A clip served over loopback HTTP, and a helper that stores it as the job's download step
does (the download streams into the storage's sink, which is then committed): the storage
tests' source.

Shared by the local-directory tests (tests/unit/) and the S3 ones (tests/integration/); the
``clips`` and ``http_client`` fixtures in tests/conftest.py build on it.
"""

from __future__ import annotations

import http.server
from typing import Any

import httpx

from worker.provider.download import stream_video
from worker.storage import Storage, StoredClip

MIB = 1 << 20
FTYP = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"


def mp4(size: int) -> bytes:
    """An ftyp box, then a pattern that never repeats at a part boundary."""
    pattern = bytes(range(251))
    return FTYP + (pattern * (size // len(pattern) + 1))[: size - len(FTYP)]


class ClipServer:
    """Serves ``body`` on 127.0.0.1; ``cut`` closes the connection after that many bytes."""

    def __init__(self) -> None:
        self.body = b""
        self.cut: int | None = None
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body[: outer.cut])

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/clip.mp4?sig=secret"


def save(
    storage: Storage, url: str, client: httpx.Client, *, name: str = "rdj_job1", **kw: Any
) -> StoredClip:
    options: dict[str, Any] = {"client": client, "max_bytes": 64 * MIB, "allow_local": True,
                               "overall_timeout": 60.0}  # fmt: skip
    options.update(kw)
    with storage.open_clip(name) as sink:
        got = stream_video(url, sink, **options)
        return sink.commit(sha256=got.sha256, seconds=got.seconds)
