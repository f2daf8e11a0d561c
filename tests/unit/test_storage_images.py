"""Stills stored beside the clips in a local directory (:func:`worker.job.stills.save_image`):
the clip's download rules and caps, a real PNG/JPEG/WebP signature, a hash, an atomic write
through the storage's sink with the output's file mode, and a manifest. A bucket is in
tests/integration/test_storage_images.py."""

from __future__ import annotations

import hashlib
import json
import stat
import struct
from pathlib import Path
from typing import Any

import httpx
import pytest

from simulator import image_png
from tests.clip_server import ClipServer, mp4
from worker.errors import DownloadRejected, StorageRefused, TransportFailure, UnsafeUrl
from worker.job.stills import save_image
from worker.provider.image_download import (
    JPEG,
    MAX_IMAGE_BYTES,
    PNG,
    WEBP,
    identify_image,
    image_size,
)
from worker.storage import LocalStorage, StoredClip
from worker.storage.modes import process_umask

PNG_BODY = image_png("img_unit", 64, 48)


def jpeg(width: int, height: int) -> bytes:
    """A JPEG's markers up to its start-of-frame: enough for the signature and the size."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + bytes(9)
    sof0 = b"\xff\xc0" + struct.pack(">HBHH", 17, 8, height, width) + bytes(10)
    return b"\xff\xd8" + app0 + sof0 + b"\xff\xd9"


def webp(width: int, height: int) -> bytes:
    """A lossless WebP header (VP8L) carrying ``width`` x ``height``."""
    bits = (width - 1) | ((height - 1) << 14)
    body = b"WEBPVP8L" + struct.pack("<I", 5) + b"\x2f" + struct.pack("<I", bits)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def store(storage: LocalStorage, url: str, client: httpx.Client, **kw: Any) -> StoredClip:
    options: dict[str, Any] = {"name": "rdj_still1", "client": client, "max_bytes": 1 << 30,
                               "allow_local": True, "overall_timeout": 30.0}  # fmt: skip
    options.update(kw)
    return save_image(storage, url, **options)


def test_a_png_is_stored_beside_the_clips_hashed_with_its_size_and_type(
    clips: ClipServer, http_client: httpx.Client, tmp_path: Path
) -> None:
    clips.body = PNG_BODY
    stored = store(LocalStorage(tmp_path), clips.url, http_client)
    target = tmp_path / "rdj_still1.png"
    assert stored.path == target and target.read_bytes() == PNG_BODY
    assert stored.uri == target.resolve().as_uri()
    assert stored.sha256 == hashlib.sha256(PNG_BODY).hexdigest() and stored.size == len(PNG_BODY)
    assert (stored.content_type, stored.width, stored.height) == ("image/png", 64, 48)
    assert stored.record_fields()["output_path"] == str(target.resolve())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rdj_still1.png"]  # no temp file left


@pytest.mark.parametrize(
    ("body", "suffix", "content_type", "size"),
    [(jpeg(1024, 576), ".jpg", "image/jpeg", (1024, 576)),
     (webp(1024, 1024), ".webp", "image/webp", (1024, 1024))],
)  # fmt: skip
def test_jpeg_and_webp_keep_their_own_extension_by_their_real_signature(
    clips: ClipServer, http_client: httpx.Client, tmp_path: Path,
    body: bytes, suffix: str, content_type: str, size: tuple[int, int],
) -> None:  # fmt: skip
    clips.body = body  # served as video/mp4: the header the server sends decides nothing
    stored = store(LocalStorage(tmp_path), clips.url, http_client, name="shoot/0001-key")
    assert stored.path == tmp_path / "shoot" / f"0001-key{suffix}"
    assert (stored.content_type, (stored.width, stored.height)) == (content_type, size)


def test_the_manifest_beside_the_image_holds_the_callers_fields_and_the_images_facts(
    clips: ClipServer, http_client: httpx.Client, tmp_path: Path
) -> None:
    clips.body = PNG_BODY
    stored = store(LocalStorage(tmp_path), clips.url, http_client,
                   manifest={"job_id": "rdj_still1", "uri": "wrong", "request": {"n": 1}})  # fmt: skip
    manifest = json.loads((tmp_path / "rdj_still1.json").read_text())
    assert manifest["job_id"] == "rdj_still1" and manifest["request"] == {"n": 1}
    assert manifest["uri"] == stored.uri  # the image's own facts win
    assert (manifest["sha256"], manifest["size"]) == (stored.sha256, stored.size)
    assert (manifest["content_type"], manifest["width"], manifest["height"]) == (
        "image/png",
        64,
        48,
    )
    assert not (tmp_path / "rdj_other.json").exists()
    store(LocalStorage(tmp_path), clips.url, http_client, name="rdj_other")  # no manifest asked
    assert not (tmp_path / "rdj_other.json").exists()


def test_the_image_and_its_manifest_get_the_configured_mode_or_what_cp_would_give(
    clips: ClipServer, http_client: httpx.Client, tmp_path: Path
) -> None:
    clips.body = PNG_BODY
    store(LocalStorage(tmp_path / "set", mode=0o640), clips.url, http_client, manifest={})
    for name in ("rdj_still1.png", "rdj_still1.json"):
        assert stat.S_IMODE((tmp_path / "set" / name).stat().st_mode) == 0o640
    store(LocalStorage(tmp_path / "umask"), clips.url, http_client)
    mode = stat.S_IMODE((tmp_path / "umask" / "rdj_still1.png").stat().st_mode)
    assert mode == 0o666 & ~process_umask()


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b"GIF89a" + bytes(64), "a GIF"),
        (b"<!doctype html><html><body>403 Forbidden</body></html>", "HTML"),
        (b'{"error": {"message": "expired"}}', "JSON"),
        (mp4(4096), "an mp4"),
        (b"\x00\x00\x00\x1cftypavif" + bytes(64), "AVIF or HEIC"),
        (bytes(range(64)), "unknown signature"),
        (b"\x89PNG\r\n\x1a\n", "cut short"),  # a PNG cut after its signature
    ],
)
def test_anything_but_png_jpeg_or_webp_is_refused_naming_what_it_is_and_nothing_is_left(
    clips: ClipServer, http_client: httpx.Client, tmp_path: Path, body: bytes, named: str
) -> None:
    clips.body = body
    with pytest.raises(DownloadRejected) as exc:
        store(LocalStorage(tmp_path), clips.url, http_client, manifest={"job_id": "x"})
    assert named in str(exc.value)
    assert "sig=secret" not in str(exc.value)  # the signed url is never told
    assert list(tmp_path.iterdir()) == []


def test_an_image_over_the_cap_is_refused_and_the_image_cap_holds_under_a_larger_clip_cap(
    clips: ClipServer, http_client: httpx.Client, tmp_path: Path
) -> None:
    clips.body = PNG_BODY
    with pytest.raises(DownloadRejected, match=r"image is \d+ bytes, over the cap of 100"):
        store(LocalStorage(tmp_path), clips.url, http_client, max_bytes=100)
    assert list(tmp_path.iterdir()) == []
    clips.body = PNG_BODY + bytes(MAX_IMAGE_BYTES)  # a clip's cap would take it
    with pytest.raises(DownloadRejected, match=f"over the cap of {MAX_IMAGE_BYTES}"):
        store(LocalStorage(tmp_path), clips.url, http_client, max_bytes=1 << 30)


def test_the_clips_ssrf_rules_hold_a_loopback_image_url_is_refused_unless_allowed(
    clips: ClipServer, http_client: httpx.Client, tmp_path: Path
) -> None:
    clips.body = PNG_BODY
    with pytest.raises(UnsafeUrl):
        store(LocalStorage(tmp_path), clips.url, http_client, allow_local=False)
    assert list(tmp_path.iterdir()) == []


def test_a_cut_connection_leaves_nothing_under_the_final_name(
    clips: ClipServer, http_client: httpx.Client, tmp_path: Path
) -> None:
    clips.body, clips.cut = PNG_BODY, 40
    with pytest.raises(TransportFailure):
        store(LocalStorage(tmp_path), clips.url, http_client)
    assert list(tmp_path.iterdir()) == []


def test_a_name_that_would_leave_the_directory_is_refused(
    clips: ClipServer, http_client: httpx.Client, tmp_path: Path
) -> None:
    clips.body = PNG_BODY
    with pytest.raises(StorageRefused):
        store(LocalStorage(tmp_path / "out"), clips.url, http_client, name="../escape")
    assert not (tmp_path / "escape.png").exists()


def test_signatures_and_sizes_are_read_from_the_header_not_the_name() -> None:
    assert identify_image(PNG_BODY[:16]) is PNG and image_size(PNG_BODY, PNG) == (64, 48)
    assert identify_image(jpeg(10, 20)[:16]) is JPEG and image_size(jpeg(10, 20), JPEG) == (10, 20)
    assert identify_image(webp(7, 9)[:16]) is WEBP and image_size(webp(7, 9), WEBP) == (7, 9)
    assert identify_image(b"\x89PNG\r\n\x1a\n" + bytes(8)) is None  # no IHDR: not a PNG
    assert image_size(b"\xff\xd8\xff\xe0\x00", JPEG) is None  # cut before its frame header


def test_a_redirect_to_the_metadata_service_is_refused_before_it_is_requested(
    tmp_path: Path,
) -> None:
    asked: list[str] = []

    def respond(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        if request.url.host == "93.184.216.34":
            return httpx.Response(302, headers={"location": "https://169.254.169.254/latest/"})
        return httpx.Response(200, content=PNG_BODY)

    with httpx.Client(transport=httpx.MockTransport(respond)) as client, pytest.raises(UnsafeUrl):
        store(LocalStorage(tmp_path), "https://93.184.216.34/i.png?sig=s", client,
              allow_local=False)  # fmt: skip
    assert asked == ["https://93.184.216.34/i.png?sig=s"]
    assert list(tmp_path.iterdir()) == []
