"""The stills the simulator generates: a record per image and a real PNG of its size.

An image is made (and billed) when ``POST /v1/images/generations`` accepts a request,
whatever becomes of the reply; its url serves a valid PNG whose ``IHDR`` says the size
the request asked for. The picture is a vertical gradient between two colours drawn from
the image id, so every image differs from the next, and the same id always gives the same
bytes (:func:`image_png`): a test can hash what it stored against what was served. A
gradient is one colour per row, which zlib folds to a few kilobytes in a few milliseconds.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

__all__ = ["ImageRecord", "ImageStore", "image_png", "image_sha256", "png_size"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data)
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


@lru_cache(maxsize=32)
def image_png(image_id: str, width: int, height: int) -> bytes:
    """The PNG served for ``image_id``: ``width`` x ``height``, 8-bit RGB, deterministic."""
    seed = hashlib.sha256(image_id.encode()).digest()
    top, bottom = seed[0:3], seed[3:6]
    rows = zlib.compressobj(6)
    parts = []
    for y in range(height):
        t = y / max(height - 1, 1)
        colour = bytes(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True))
        parts.append(rows.compress(b"\x00" + colour * width))  # filter type 0, then pixels
    parts.append(rows.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        _SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", b"".join(parts))
        + _chunk(b"IEND", b"")
    )  # fmt: skip


def image_sha256(image_id: str, width: int, height: int) -> str:
    """The hex sha256 of :func:`image_png` (what a client that stored it must find)."""
    return hashlib.sha256(image_png(image_id, width, height)).hexdigest()


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's ``IHDR``, or None when ``data`` is not a PNG."""
    if len(data) < 24 or not data.startswith(_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One generated image: who asked, with which model, at what size."""

    image_id: str
    owner: str
    model: str
    width: int
    height: int
    created_at: float


@dataclass
class ImageStore:
    """Every image made, the requests billed per Idempotency-Key, and replies to replay."""

    images: dict[str, ImageRecord] = field(default_factory=dict)
    # (owner, Idempotency-Key) -> (image ids, sha256 of the canonical body) of its first reply
    replies: dict[tuple[str, str], tuple[list[str], str]] = field(default_factory=dict)
    billed_by_key: Counter[str] = field(default_factory=Counter)
    requests: int = 0

    def add(
        self, records: list[ImageRecord], *, idempotency_key: str | None, body_hash: str
    ) -> None:
        """Record one accepted (billed) request and the images it made."""
        self.requests += 1
        for record in records:
            self.images[record.image_id] = record
        if idempotency_key is not None and records:
            self.billed_by_key[idempotency_key] += 1
            key = (records[0].owner, idempotency_key)
            self.replies.setdefault(key, ([r.image_id for r in records], body_hash))

    def replay(self, owner: str, idempotency_key: str | None) -> tuple[list[str], str] | None:
        """The image ids and body hash of the first request with this key, if any."""
        if idempotency_key is None:
            return None
        return self.replies.get((owner, idempotency_key))

    def get(self, image_id: str) -> ImageRecord | None:
        """The image, if it was made."""
        return self.images.get(image_id)

    def clear(self) -> None:
        """Forget every image and request."""
        self.images.clear()
        self.replies.clear()
        self.billed_by_key.clear()
        self.requests = 0

    def stats(self) -> dict[str, Any]:
        """What ``/_sim/stats`` shows of images: requests and images billed, jobs paid twice,
        and the billed requests of each Idempotency-Key (a job's image POSTs).

        Every accepted request is billed, whatever became of its reply (a lost reply is
        billed too); two billed requests under one Idempotency-Key are one job paid twice.
        """
        twice = {key: n for key, n in self.billed_by_key.items() if n > 1}
        return {
            "image_requests": self.requests,
            "images_billed": len(self.images),
            "image_paid_twice": len(twice),
            "extra_billed_image_requests": sum(n - 1 for n in twice.values()),
            "image_requests_by_idempotency_key": dict(self.billed_by_key),
        }
