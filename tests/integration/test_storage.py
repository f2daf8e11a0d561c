"""Output storage: a local directory, or a bucket on a real S3-compatible server (moto).

The S3 tests stream real HTTP from a loopback clip server into moto's S3 API through the
same :class:`~worker.storage.s3.S3Storage` the worker uses.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import math
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from config.settings import SettingsError, load_settings
from tests.s3_server import REGION, Bucket
from worker.errors import (
    DownloadRejected,
    StorageRefused,
    StorageUnavailable,
    TransportFailure,
)
from worker.infra.redis_server import free_port
from worker.provider.download import make_download_client
from worker.storage import LocalStorage, StoredClip, check_output, make_storage
from worker.storage.s3 import S3Storage

MIB = 1 << 20
PART = 5 * MIB
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


@pytest.fixture
def clips() -> Iterator[ClipServer]:
    served = ClipServer()
    thread = threading.Thread(target=served.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        served.server.shutdown()
        served.server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def http_client() -> Iterator[httpx.Client]:
    with make_download_client(connect_timeout=5, read_timeout=10) as client:
        yield client


def s3_storage(where: Bucket, monkeypatch: pytest.MonkeyPatch, **overrides: Any) -> S3Storage:
    bucket = where
    for name, value in bucket.env().items():
        monkeypatch.setenv(name, value)
    options: dict[str, Any] = {"bucket": bucket.name, "prefix": bucket.prefix,
                               "endpoint_url": bucket.server.url, "region": REGION,
                               "part_size": PART}  # fmt: skip
    options.update(overrides)
    return S3Storage(**options)


def save(
    storage: S3Storage | LocalStorage, url: str, client: httpx.Client, **kw: Any
) -> StoredClip:
    options: dict[str, Any] = {"name": "rdj_job1", "client": client, "max_bytes": 64 * MIB,
                               "allow_local": True, "overall_timeout": 60.0}  # fmt: skip
    options.update(kw)
    return storage.save_clip(url, **options)


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


def test_an_endpoint_that_does_not_answer_is_unavailable_not_refused(
    clips: ClipServer, http_client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    clips.body = mp4(1 * MIB)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    storage = S3Storage(bucket="clips", endpoint_url=f"http://127.0.0.1:{free_port()}",
                        region=REGION, connect_timeout=1, read_timeout=1)  # fmt: skip
    with pytest.raises(StorageUnavailable):
        save(storage, clips.url, http_client)


def test_the_check_creates_and_aborts_an_upload_leaving_nothing(
    bucket: Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = s3_storage(bucket, monkeypatch)
    assert "aborted" in storage.check()
    assert bucket.keys() == [] and bucket.uploads() == []


# --- the local directory -------------------------------------------------------------------


def test_local_storage_keeps_todays_path_and_adds_a_file_uri(
    clips: ClipServer, http_client: httpx.Client, tmp_path: Path
) -> None:
    clips.body = mp4(300_000)
    clip = save(LocalStorage(tmp_path), clips.url, http_client)
    assert clip.path == tmp_path / "rdj_job1.mp4"
    assert clip.uri == (tmp_path / "rdj_job1.mp4").resolve().as_uri()
    assert clip.record_fields()["output_path"] == str((tmp_path / "rdj_job1.mp4").resolve())
    assert "etag" not in clip.record_fields()


def test_local_check_writes_and_removes_a_probe_and_refuses_a_path_under_a_file(
    tmp_path: Path,
) -> None:
    assert "probe" in LocalStorage(tmp_path / "new").check()
    assert list((tmp_path / "new").iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageRefused, match="cannot write to"):
        LocalStorage(tmp_path / "file" / "renders").check()


def test_the_local_default_works_without_boto3_installed(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['boto3'] = None; sys.modules['botocore'] = None\n"
        "from config.settings import load_settings\n"
        "from worker.storage import check_output, make_storage\n"
        f"s = load_settings(output_dir={str(tmp_path)!r})\n"
        "print(type(make_storage(s)).__name__, check_output(s))\n"
        "try:\n"
        "    make_storage(load_settings(output='s3://clips/x'))\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAYDANCE_", "AWS_"))}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=Path(__file__).resolve().parents[2], check=True).stdout  # fmt: skip
    assert out.startswith("LocalStorage ")
    assert "SettingsError RELAYDANCE_OUTPUT names a bucket, but boto3 is not installed" in out
    assert "pip install 'relaydance-worker[s3]'" in out


# --- settings ------------------------------------------------------------------------------


def test_output_is_a_directory_or_an_s3_url_and_either_variable_name_sets_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RELAYDANCE_OUTPUT", "s3://clips/renders/2025/")
    assert load_settings().output_bucket() == ("clips", "renders/2025")
    monkeypatch.delenv("RELAYDANCE_OUTPUT")
    monkeypatch.setenv("RELAYDANCE_OUTPUT_URL", "s3://clips")
    assert load_settings().output_bucket() == ("clips", "")
    monkeypatch.setenv("RELAYDANCE_OUTPUT_URL", str(tmp_path))
    settings = load_settings()
    assert settings.output_bucket() is None and settings.output_dir == tmp_path
    assert isinstance(make_storage(settings), LocalStorage)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("gs://clips/renders", "must be a local directory or s3://bucket/prefix"),
        ("s3://Clips_Bucket/x", "is not a valid S3 bucket name"),
        ("s3://clips/a//b", "plain path segments"),
    ],
)
def test_a_bad_output_names_the_variable_and_the_fix(
    monkeypatch: pytest.MonkeyPatch, value: str, says: str
) -> None:
    monkeypatch.setenv("RELAYDANCE_OUTPUT", value)
    with pytest.raises(SettingsError, match="RELAYDANCE_OUTPUT: ") as caught:
        load_settings()
    assert says in str(caught.value)


def test_a_local_output_that_contradicts_output_dir_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RELAYDANCE_OUTPUT", str(tmp_path / "a"))
    monkeypatch.setenv("RELAYDANCE_OUTPUT_DIR", str(tmp_path / "b"))
    with pytest.raises(SettingsError, match="set only one of them"):
        load_settings()


def test_check_output_reads_the_bucket_from_the_settings(
    bucket: Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in bucket.env().items():
        monkeypatch.setenv(name, value)
    assert check_output(load_settings()).startswith("s3://clips/renders: ")
    monkeypatch.setenv("RELAYDANCE_OUTPUT", "s3://missing-bucket/x")
    with pytest.raises(StorageRefused, match="NoSuchBucket"):
        check_output(load_settings())


def test_the_manifest_json_written_locally_is_unchanged_in_form(tmp_path: Path) -> None:
    uri = LocalStorage(tmp_path).save_manifest("rdj_job1", {"b": 1, "a": 2})
    assert uri == (tmp_path / "rdj_job1.json").resolve().as_uri()
    assert json.loads((tmp_path / "rdj_job1.json").read_text()) == {"a": 2, "b": 1}
