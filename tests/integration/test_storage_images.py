"""A still in a bucket on a real S3-compatible server (moto): one PUT beside the clips, with
its content type, hash and manifest; the local directory is in tests/unit/test_storage_images.py."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx
import pytest

from simulator import image_png
from tests.clip_server import ClipServer
from tests.integration.test_storage import s3_storage
from tests.s3_server import Bucket
from worker.errors import DownloadRejected, StorageError, StorageRefused
from worker.job.stills import save_image
from worker.storage.s3 import S3Storage
from worker.storage.sink import StoredClip

PNG = image_png("img_bucket", 320, 180)


def put_still(
    bucket: Bucket,
    clips: ClipServer,
    http_client: httpx.Client,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    **options: Any,
) -> tuple[S3Storage, StoredClip]:
    """:data:`PNG` stored as ``name`` in the bucket, as an image job stores a still."""
    clips.body = PNG
    storage = s3_storage(bucket, monkeypatch)
    stored = save_image(storage, clips.url, name=name, client=http_client, max_bytes=1 << 30,
                        allow_local=True, overall_timeout=30, **options)  # fmt: skip
    return storage, stored


def test_a_still_is_put_under_the_prefix_with_its_type_hash_and_manifest(
    bucket: Bucket, clips: ClipServer, http_client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, stored = put_still(bucket, clips, http_client, monkeypatch, "shoot/0001-keyframe",
                          manifest={"job_id": "rdj_s3"})  # fmt: skip
    key = "renders/shoot/0001-keyframe.png"
    assert bucket.keys() == ["renders/shoot/0001-keyframe.json", key]
    assert bucket.read(key) == PNG
    assert stored.uri == f"s3://clips/{key}" and stored.path is None
    assert stored.sha256 == hashlib.sha256(PNG).hexdigest()
    assert (stored.width, stored.height) == (320, 180)
    head = bucket.head(key)
    assert head["ContentType"] == "image/png" and stored.etag == head["ETag"].strip('"')
    manifest = json.loads(bucket.read("renders/shoot/0001-keyframe.json"))
    assert (manifest["job_id"], manifest["uri"], manifest["etag"]) == ("rdj_s3", stored.uri,
                                                                      stored.etag)  # fmt: skip
    assert bucket.uploads() == []


def test_a_body_that_is_not_an_image_puts_nothing(
    bucket: Bucket, clips: ClipServer, http_client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    clips.body = b"<html><body>AccessDenied</body></html>"
    storage = s3_storage(bucket, monkeypatch)
    with pytest.raises(DownloadRejected, match="HTML"):
        save_image(storage, clips.url, name="rdj_bad", client=http_client, max_bytes=1 << 30,
                   allow_local=True, overall_timeout=30, manifest={})  # fmt: skip
    assert bucket.keys() == []


def test_a_stored_still_is_read_back_from_its_bucket_and_only_from_it(
    bucket: Bucket, clips: ClipServer, http_client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage, stored = put_still(bucket, clips, http_client, monkeypatch, "rdj_back")
    assert storage.read(stored.uri, max_bytes=1 << 20) == PNG
    with pytest.raises(StorageRefused, match="is over 64 bytes"):
        storage.read(stored.uri, max_bytes=64)
    with pytest.raises(StorageRefused, match="is not in the output bucket"):
        storage.read("s3://another/renders/rdj_back.png", max_bytes=1 << 20)
    with pytest.raises(StorageError, match="NoSuchKey"):
        storage.read(stored.uri.replace("rdj_back", "rdj_gone"), max_bytes=1 << 20)
