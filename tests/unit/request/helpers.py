"""Helpers for the render request's tests: requests, their problems, tiny real media files."""

from __future__ import annotations

import io
import struct
import wave
from typing import Any

import pytest

from worker.errors import InvalidRequest
from worker.render.validation import validate_request

SEEDANCE_15 = "seedance-1-5-pro-with-audio"  # 4-12 s, 16:9/9:16/1:1, 480p/720p, no flag
SEEDANCE = "doubao-seedance-2-0-1080p"  # 4-15 s, 9 images / 3 videos / 3 audio, audio on


def url(name: str) -> str:
    return f"https://example.com/{name}"


def problems(data: Any, *, check_files: bool = True) -> list[tuple[str, str]]:
    """The (field, message) problems validate_request reports for ``data``."""
    with pytest.raises(InvalidRequest) as info:
        validate_request(data, check_files=check_files)
    return info.value.problems


def only_problem(data: Any, field: str, *fix: str) -> str:
    """Assert exactly one problem, on ``field``, whose message contains every ``fix`` text."""
    found = problems(data)
    assert [f for f, _ in found] == [field], found
    message = found[0][1]
    for text in fix:
        assert text in message, (text, message)
    return message


def request(**fields: Any) -> dict[str, Any]:
    return {"model": SEEDANCE, "prompt": "A dancer spins in golden hour light", **fields}


def jpeg_bytes() -> bytes:
    """SOI, a JFIF APP0 segment and EOI: the header every JPEG file starts with."""
    app0 = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    return b"\xff\xd8" + b"\xff\xe0" + struct.pack(">H", len(app0) + 2) + app0 + b"\xff\xd9"


def wav_bytes() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x00" * 800)
    return buffer.getvalue()


def mp3_bytes() -> bytes:
    """Two silent MPEG-1 Layer III frames (128 kbit/s, 44.1 kHz: 417 bytes each)."""
    frame = b"\xff\xfb\x90\x64" + bytes(413)
    return frame * 2
