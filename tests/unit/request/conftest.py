"""The render request's tests: real (tiny) media files, written byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator import PNG_BYTES, video_bytes
from tests.unit.request.helpers import jpeg_bytes, mp3_bytes, wav_bytes


@pytest.fixture
def media(tmp_path: Path) -> dict[str, Path]:
    files = {
        "png": ("still.png", PNG_BYTES),
        "jpeg": ("photo.jpg", jpeg_bytes()),
        "mp4": ("clip.mp4", video_bytes()),
        "wav": ("voice.wav", wav_bytes()),
        "mp3": ("song.mp3", mp3_bytes()),
        "text": ("notes.png", b"just some text, not an image\n"),
    }
    paths = {}
    for key, (name, data) in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        paths[key] = path
    return paths
