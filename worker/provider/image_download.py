"""Safe download of a generated image: the clip's SSRF rules and caps, a real signature.

An image url is as untrusted as a clip's: it goes through the same checked, hop-by-hop
fetch (:func:`worker.provider.download.stream_checked`: https and public addresses only
unless allowed, each redirect re-checked, the declared and the counted size capped, an
overall deadline). The body must open as a PNG, a JPEG or a WebP file; anything else (a
GIF, an HTML error page, an mp4, a truncated file) is refused naming what it is. Images
are small, so the body is held in memory, under :data:`MAX_IMAGE_BYTES` whatever the clip
cap, and the storage writes it whole. Its width and height are read from its header.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import httpx

from worker.errors import DownloadRejected
from worker.provider.download import HeadCheck, stream_checked

__all__ = [
    "IMAGE_FORMATS",
    "MAX_IMAGE_BYTES",
    "FetchedImage",
    "ImageFormat",
    "fetch_image",
    "identify_image",
    "image_size",
]

MAX_IMAGE_BYTES = 64 << 20  # an uncompressed 4096x4096 RGBA still; generated ones are far smaller
_HEAD = 16  # enough for every signature below, and PNG's IHDR chunk type


@dataclass(frozen=True)
class ImageFormat:
    """A still format the fleet stores: its name, file extension and MIME type."""

    name: str
    extension: str
    content_type: str


PNG = ImageFormat("PNG", "png", "image/png")
JPEG = ImageFormat("JPEG", "jpg", "image/jpeg")
WEBP = ImageFormat("WebP", "webp", "image/webp")
IMAGE_FORMATS = (PNG, JPEG, WEBP)
# Recognised, refused: named so the error says what came instead of a still.
_OTHERS = (
    (b"GIF87a", "a GIF"), (b"GIF89a", "a GIF"), (b"\x00\x00\x01\x00", "an ICO"),
    (b"BM", "a BMP"), (b"II*\x00", "a TIFF"), (b"MM\x00*", "a TIFF"), (b"%PDF", "a PDF"),
    (b"{", "JSON"), (b"<", "an HTML or XML page (an error page, or an SVG)"),
)  # fmt: skip


def identify_image(head: bytes) -> ImageFormat | None:
    """The format a file's first bytes prove, or None: the signature, not a guess."""
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
        return PNG
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    return None


def _refusal(head: bytes) -> str | None:
    if identify_image(head) is not None:
        return None
    if head.startswith(b"\x89PNG"):
        return "not a PNG, JPEG or WebP image (a PNG signature without its header: cut short)"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        kind = (
            "an AVIF or HEIC still" if brand in (b"avif", b"heic", b"heix", b"mif1") else "an mp4"
        )
        return f"not a PNG, JPEG or WebP image ({kind})"
    stripped = head.lstrip()
    for signature, name in _OTHERS:
        if stripped.startswith(signature):
            return f"not a PNG, JPEG or WebP image ({name})"
    return "not a PNG, JPEG or WebP image (unknown signature)"


IMAGE_HEAD = HeadCheck(_HEAD, _refusal, what="image")


def image_size(data: bytes, fmt: ImageFormat) -> tuple[int, int] | None:
    """(width, height) from the image's header, or None where it does not say."""
    if fmt is PNG and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if fmt is WEBP:
        return _webp_size(data)
    if fmt is JPEG:
        return _jpeg_size(data)
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    # Walk the markers to the first start-of-frame (SOF0-SOF15 but DHT, JPG and DAC).
    at = 2
    while at + 9 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return int(width), int(height)
        at += 2 + length
    return None


@dataclass(frozen=True)
class FetchedImage:
    """An image downloaded whole and checked: bytes, format, size, hash, time, dimensions."""

    data: bytes
    format: ImageFormat
    sha256: str
    seconds: float
    width: int | None = None
    height: int | None = None

    @property
    def size(self) -> int:
        """Bytes."""
        return len(self.data)


def fetch_image(
    url: str,
    *,
    client: httpx.Client,
    max_bytes: int,
    allow_local: bool,
    overall_timeout: float,
) -> FetchedImage:
    """Download the image at ``url`` with the clip's checks; refuse all but PNG/JPEG/WebP.

    ``max_bytes`` is the clip cap (``RELAYDANCE_DOWNLOAD_MAX_BYTES``); an image is further
    held to :data:`MAX_IMAGE_BYTES`. Raises what :func:`~worker.provider.download.stream_video`
    raises: ``UnsafeUrl``, ``UrlExpired``, ``DownloadRejected`` (too large, not an image)
    and the transient errors.
    """
    body = io.BytesIO()
    got = stream_checked(url, body, check=IMAGE_HEAD, client=client,
                         max_bytes=min(max_bytes, MAX_IMAGE_BYTES), allow_local=allow_local,
                         overall_timeout=overall_timeout)  # fmt: skip
    data = body.getvalue()
    fmt = identify_image(data[:_HEAD])
    if fmt is None:  # stream_checked checked the head; this keeps the types honest
        raise DownloadRejected("not a PNG, JPEG or WebP image")
    width, height = image_size(data, fmt) or (None, None)
    return FetchedImage(data, fmt, got.sha256, got.seconds, width, height)
