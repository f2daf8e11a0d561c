"""Output storage in a bucket on a real S3-compatible server (moto).

The tests stream real HTTP from a loopback clip server into moto's S3 API through the
same :class:`~worker.storage.s3.S3Storage` the worker uses. The local directory and the
output setting, which need no S3 server, are in tests/unit/test_storage_local.py.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import httpx
import pytest

from config.settings import load_settings
from tests.clip_server import MIB, ClipServer, mp4, save
from tests.s3_server import REGION, Bucket
from worker.errors import (
    DownloadRejected,
    StorageRefused,
    TransportFailure,
)
from worker.storage import check_output
from worker.storage.s3 import S3Storage

PART = 5 * MIB


def s3_storage(where: Bucket, monkeypatch: pytest.MonkeyPatch, **overrides: Any) -> S3Storage:
    bucket = where
    for name, value in bucket.env().items():
        monkeypatch.setenv(name, value)
    options: dict[str, Any] = {"bucket": bucket.name, "prefix": bucket.prefix,
                               "endpoint_url": bucket.server.url, "region": REGION,
                               "part_size": PART}  # fmt: skip
    options.update(overrides)
    return S3Storage(**options)


# --- S3: the clip, committed only when whole --------------------------------------------


def test_a_clip_is_committed_under_prefix_job_id_mp4_with_its_sha256_size_and_etag(
    bucket: Bucket, clips: ClipServer, http_client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    clips.body = mp4(12 * MIB + 123)
    storage = s3_storage(bucket, monkeypatch)

    clip = save(storage, clips.url, http_client)

    key = "renders/rdj_job1.mp4"
    assert bucket.keys() == [key]
    assert bucket.read(key) == clips.body
    assert clip.uri == f"s3://clips/{key}"
    assert clip.size == len(clips.body)
    assert clip.sha256 == hashlib.sha256(clips.body).hexdigest()
    head = bucket.head(key)
    assert clip.etag == head["ETag"].strip('"') and clip.etag.endswith("-3")  # three parts
    assert head["ContentType"] == "video/mp4"
    assert bucket.uploads() == []
    assert clip.record_fields() == {"output_uri": clip.uri, "size": clip.size,
                                    "sha256": clip.sha256, "etag": clip.etag}  # fmt: skip


def test_parts_leave_while_the_body_is_still_arriving_and_none_exceeds_a_part(
    bucket: Bucket, clips: ClipServer, http_client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    clips.body = mp4(17 * MIB)
    storage = s3_storage(bucket, monkeypatch)
    received = [0]
    parts: list[tuple[int, int]] = []  # (bytes received when the part left, part size)
    in_flight = [0, 0]  # now, most ever

    def on_part(params: dict[str, Any], **_: Any) -> None:
        parts.append((received[0], len(params["Body"])))
        in_flight[0] += 1
        in_flight[1] = max(in_flight)

    def part_done(**_: Any) -> None:
        in_flight[0] -= 1

    events = storage.client.meta.events
    events.register("provide-client-params.s3.UploadPart", on_part)
    events.register("after-call.s3.UploadPart", part_done)

    def progress(size: int) -> None:
        received[0] = size

    save(storage, clips.url, http_client, on_progress=progress)

    assert len(parts) == math.ceil(len(clips.body) / PART) == 4
    assert parts[0][0] < len(clips.body) // 2  # streamed: the first part left early
    assert [size for _, size in parts[:-1]] == [PART] * 3  # one part buffered, at most
    assert in_flight[1] == 1  # parts go up one at a time


def test_every_part_but_the_last_has_the_same_size_whatever_the_chunks(
    bucket: Bucket, clips: ClipServer, http_client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    clips.body = mp4(13 * MIB)
    part = PART + 1000  # not a multiple of the 64 KiB chunks the body arrives in
    storage = s3_storage(bucket, monkeypatch, part_size=part)
    sizes: list[int] = []
    storage.client.meta.events.register(
        "provide-client-params.s3.UploadPart",
        lambda params, **_: sizes.append(len(params["Body"])),
    )
    clip = save(storage, clips.url, http_client)
    assert sizes == [part, part, len(clips.body) - 2 * part]
    assert bucket.read("renders/rdj_job1.mp4") == clips.body
    assert clip.sha256 == hashlib.sha256(clips.body).hexdigest()


@pytest.mark.parametrize(
    ("body", "cut", "cap", "error"),
    [
        (b"\x00\x00\x00\x18moov" + bytes(MIB), None, 64 * MIB, DownloadRejected),
        (mp4(12 * MIB), None, 11 * MIB, DownloadRejected),
        (mp4(12 * MIB), 7 * MIB, 64 * MIB, TransportFailure),  # after a part went up
    ],
    ids=["not-an-mp4", "over-the-cap", "dropped-mid-body"],
)
def test_a_failed_stream_leaves_no_object_and_no_incomplete_upload(
    bucket: Bucket, clips: ClipServer, http_client: httpx.Client,
    monkeypatch: pytest.MonkeyPatch, body: bytes, cut: int | None, cap: int,
    error: type[Exception],
) -> None:  # fmt: skip
    clips.body, clips.cut = body, cut
    storage = s3_storage(bucket, monkeypatch)
    with pytest.raises(error):
        save(storage, clips.url, http_client, max_bytes=cap)
    assert bucket.keys() == []
    assert bucket.uploads() == []


def test_a_clip_sink_left_without_a_commit_aborts_its_upload_after_a_part_went_up(
    bucket: Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = s3_storage(bucket, monkeypatch)
    with storage.open_clip("rdj_job1") as sink:
        sink.write(mp4(PART + 1))
        assert len(bucket.uploads()) == 1  # a part is up, nothing is visible
        assert bucket.keys() == []
    assert bucket.uploads() == [] and bucket.keys() == []


def test_a_retried_delivery_overwrites_one_object_and_aborts_a_killed_attempts_upload(
    bucket: Bucket, clips: ClipServer, http_client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    clips.body = mp4(6 * MIB)
    storage = s3_storage(bucket, monkeypatch)
    # What a worker killed mid-upload leaves: an incomplete upload with a part in it.
    killed = bucket.s3().create_multipart_upload(Bucket="clips", Key="renders/rdj_job1.mp4")
    bucket.s3().upload_part(Bucket="clips", Key="renders/rdj_job1.mp4", PartNumber=1,
                            UploadId=killed["UploadId"], Body=clips.body[:PART])  # fmt: skip
    assert bucket.keys() == []  # an incomplete upload is not an object

    first = save(storage, clips.url, http_client)
    second = save(storage, clips.url, http_client)

    assert bucket.keys() == ["renders/rdj_job1.mp4"]
    assert bucket.uploads() == []
    assert first.sha256 == second.sha256 == hashlib.sha256(clips.body).hexdigest()


def test_the_manifest_is_stored_beside_the_clip_as_job_id_json(
    bucket: Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = s3_storage(bucket, monkeypatch)
    uri = storage.save_manifest("rdj_job1", {"job_id": "rdj_job1", "size": 3})
    assert uri == "s3://clips/renders/rdj_job1.json"
    assert bucket.manifest("rdj_job1") == {"job_id": "rdj_job1", "size": 3}
    assert bucket.head("renders/rdj_job1.json")["ContentType"] == "application/json"


def test_a_named_clip_and_its_manifest_go_under_the_prefix_by_their_name(
    bucket: Bucket, clips: ClipServer, http_client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    clips.body = mp4(1 * MIB)
    storage = s3_storage(bucket, monkeypatch)
    clip = save(storage, clips.url, http_client, name="shoot/0001-a-paper-boat")
    storage.save_manifest("shoot/0001-a-paper-boat", {"output_name": "shoot/0001-a-paper-boat"})
    assert clip.uri == "s3://clips/renders/shoot/0001-a-paper-boat.mp4"
    assert sorted(bucket.keys()) == ["renders/shoot/0001-a-paper-boat.json",
                                     "renders/shoot/0001-a-paper-boat.mp4"]  # fmt: skip
    for trick in ("../outside", "shoot//x", "./x", "a/.."):
        with pytest.raises(StorageRefused, match="not a plain relative path"):
            storage.save_manifest(trick, {})
    assert len(bucket.keys()) == 2


def test_a_presigned_url_reads_the_clip_for_the_time_asked(
    bucket: Bucket, clips: ClipServer, http_client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    clips.body = mp4(1 * MIB)
    storage = s3_storage(bucket, monkeypatch)
    clip = save(storage, clips.url, http_client)

    url = storage.presigned_url(clip.uri, expires_in=120)

    assert "X-Amz-Signature=" in url and "X-Amz-Expires=120" in url
    assert httpx.get(url, timeout=10).content == clips.body
    default = httpx.URL(storage.presigned_url(clip.uri))
    assert default.params["X-Amz-Expires"] == "3600"


# --- S3: refusals and outages name the fix ------------------------------------------------


def test_a_missing_bucket_is_refused_naming_the_bucket_and_the_fix(
    bucket: Bucket, clips: ClipServer, http_client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    clips.body = mp4(1 * MIB)
    storage = s3_storage(bucket, monkeypatch, bucket="no-such-bucket")
    with pytest.raises(StorageRefused) as caught:
        save(storage, clips.url, http_client)
    assert "NoSuchBucket" in str(caught.value)
    assert "create bucket 'no-such-bucket' or fix RELAYDANCE_OUTPUT" in str(caught.value)
    with pytest.raises(StorageRefused):
        storage.check()


def test_credentials_that_may_not_write_are_refused_with_the_rights_to_grant(
    bucket: Bucket, clips: ClipServer, http_client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    clips.body = mp4(1 * MIB)
    reader = bucket.make_user("reader", ["s3:GetObject", "s3:ListBucket"])
    bucket.creds = bucket.make_user("admin", ["*"])
    storage = s3_storage(bucket, monkeypatch)
    for name, value in bucket.env(**reader).items():
        monkeypatch.setenv(name, value)
    with bucket.server.enforcing_iam():
        with pytest.raises(StorageRefused) as caught:
            save(storage, clips.url, http_client)
        with pytest.raises(StorageRefused):
            storage.check()
        assert bucket.keys() == []
    assert "AccessDenied" in str(caught.value) and "s3:PutObject" in str(caught.value)
    assert reader["secret_key"] not in str(caught.value)


def test_the_check_creates_and_aborts_an_upload_leaving_nothing(
    bucket: Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = s3_storage(bucket, monkeypatch)
    assert "aborted" in storage.check()
    assert bucket.keys() == [] and bucket.uploads() == []


# --- the local directory -------------------------------------------------------------------


# --- settings ------------------------------------------------------------------------------


def test_check_output_reads_the_bucket_from_the_settings(
    bucket: Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in bucket.env().items():
        monkeypatch.setenv(name, value)
    assert check_output(load_settings()).startswith("s3://clips/renders: ")
    monkeypatch.setenv("RELAYDANCE_OUTPUT", "s3://missing-bucket/x")
    with pytest.raises(StorageRefused, match="NoSuchBucket"):
        check_output(load_settings())
