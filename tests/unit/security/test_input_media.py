"""Media signatures: what each kind accepts, and the look-alikes it refuses."""

from __future__ import annotations

import pytest

from simulator import PNG_BYTES, video_bytes
from worker.render.media import identify

FRAME = b"\xff\xfb\x90\x64" + bytes(413)  # MPEG-1 Layer III, 128 kbit/s, 44.1 kHz
ACCEPTED = {
    "jpeg": (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "image/jpeg"),
    "png": (PNG_BYTES, "image/png"),
    "webp": (b"RIFF\x24\x00\x00\x00WEBPVP8 " + bytes(32), "image/webp"),
    "mp4": (video_bytes(), "video/mp4"),
    "mp3-two-frames": (FRAME * 2, "audio/mpeg"),
    "mp3-id3v2.4": (b"ID3\x04\x00\x00\x00\x00\x01\x00" + FRAME, "audio/mpeg"),
    "wav": (b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(32), "audio/wav"),
    "m4a": (b"\x00\x00\x00\x18ftypM4A \x00\x00\x00\x00M4A isom", "audio/mp4"),
    "flac": (b"fLaC\x00\x00\x00\x22" + bytes(34), "audio/flac"),
}
REFUSED = {
    "utf16-le-bom-text": b"\xff\xfe" + "secret=hunter2\n".encode("utf-16-le"),
    "utf16-be-bom-text": b"\xfe\xff" + "secret=hunter2".encode("utf-16-be"),
    "ff-ff-run": b"\xff" * 64,
    "one-frame-header-then-text": FRAME[:4] + b"secret=hunter2" * 40,
    "layer-i-header": b"\xff\xfe\x90\x64" + bytes(600),
    "reserved-sample-rate": b"\xff\xfb\x9c\x64" + bytes(600),
    "id3-with-bad-size": b"ID3\x04\x00\x00\xff\xff\xff\xff" + bytes(16),
    "plain-text": b"model,prompt\nx,y\n",
}
NOT_TAKEN = {
    "heic": b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic",
    "avif": b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf",
    "gif": b"GIF89a" + bytes(16),
    "quicktime": b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  ",
    "webm": b"\x1a\x45\xdf\xa3" + bytes(16),
}


@pytest.mark.parametrize(("head", "mime"), list(ACCEPTED.values()), ids=list(ACCEPTED))
def test_real_signatures_are_accepted_with_their_content_type(head: bytes, mime: str) -> None:
    found = identify(head)
    assert found is not None and found.accepted and found.content_type == mime


@pytest.mark.parametrize("head", list(REFUSED.values()), ids=list(REFUSED))
def test_look_alikes_are_no_media_at_all(head: bytes) -> None:
    assert identify(head) is None


@pytest.mark.parametrize("head", list(NOT_TAKEN.values()), ids=list(NOT_TAKEN))
def test_formats_the_providers_do_not_list_are_named_and_refused(head: bytes) -> None:
    found = identify(head)
    assert found is not None and not found.accepted
