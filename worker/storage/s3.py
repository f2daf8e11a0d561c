"""Clips in an S3-compatible bucket (AWS S3, R2, GCS's S3 API, MinIO), through boto3.

A clip's sink is a multipart upload that takes the body part by part as it is written, so
memory holds one part whatever the clip's size. Only a committed sink (its writer checked
the clip whole) completes the upload (CompleteMultipartUpload), under
``<prefix>/<job id>.mp4``: until then nothing is visible under that name. A still's sink
holds it in memory (stills are small) and puts it in one PutObject when committed. A failed
attempt aborts its upload; an upload left by a killed worker is aborted by the attempt
that commits the clip (and, as a safety net, by the bucket's lifecycle rule, see
docs/operations.md). A retried delivery writes the same key again: never two objects.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, cast

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from config.parts.storage import S3_SCHEME
from worker.errors import StorageError, StorageRefused, StorageUnavailable
from worker.storage.base import Storage
from worker.storage.multipart import MultipartUpload
from worker.storage.sink import Sink, StoredClip

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from config.settings import Settings

__all__ = ["S3Storage", "parse_s3_uri"]

logger = logging.getLogger(__name__)

AddressingStyle = Literal["auto", "path", "virtual"]  # checked by the settings
MAX_PARTS = 10_000  # S3's limit on the parts of one upload
# Answers that a retry may cure; every other error code is a refusal to fix by hand.
_RETRYABLE = frozenset(
    {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "NoSuchUpload"}
)
_RIGHTS = (
    "give these credentials s3:PutObject, s3:AbortMultipartUpload and "
    "s3:ListBucketMultipartUploads on it"
)


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of ``s3://bucket/key``."""
    if not uri.startswith(S3_SCHEME):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[len(S3_SCHEME) :].partition("/")
    if not bucket or not key:
        raise ValueError(f"an s3:// URI names a bucket and a key: {uri!r}")
    return bucket, key


class S3Storage(Storage):
    """Writes ``s3://<bucket>/<prefix>/<job id>.mp4`` and ``.json`` with boto3."""

    remote = True

    def __init__(
        self,
        *,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        addressing_style: AddressingStyle = "auto",
        part_size: int = 8 << 20,
        presign_seconds: int = 3600,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        max_clip_bytes: int = 1 << 30,
    ) -> None:
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.max_clip_bytes = max_clip_bytes  # the download cap: a clip at it must fit
        self.where = f"{S3_SCHEME}{bucket}/{self.prefix}" if self.prefix else f"{S3_SCHEME}{bucket}"
        self.part_size = part_size
        self.presign_seconds = presign_seconds
        self._endpoint_url, self._region = endpoint_url, region
        self._config = Config(
            signature_version="s3v4",
            s3={"addressing_style": addressing_style},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"mode": "standard", "max_attempts": 3},
            max_pool_connections=32,
            # Only the checksums S3 requires: newer default CRC headers are refused by
            # some S3-compatible stores; the clip's own sha256 is computed as it streams.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._client: S3Client | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Storage:
        """The bucket, prefix and client options of the settings."""
        bucket = settings.output_bucket()
        assert bucket is not None, "RELAYDANCE_OUTPUT does not name a bucket"
        return cls(
            bucket=bucket[0],
            prefix=bucket[1],
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            addressing_style=cast(AddressingStyle, settings.s3_addressing_style),
            part_size=settings.s3_part_size,
            presign_seconds=settings.s3_presign_seconds,
            connect_timeout=settings.http_connect_timeout,
            read_timeout=settings.http_read_timeout,
            max_clip_bytes=settings.download_max_bytes,
        )

    @property
    def client(self) -> S3Client:
        """The boto3 client, made on first use (clients are thread-safe, sessions not)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    session = boto3.session.Session()
                    self._client = session.client(
                        "s3",
                        endpoint_url=self._endpoint_url,
                        region_name=self._region,
                        config=self._config,
                    )
        return self._client

    def key_for(self, name: str, suffix: str) -> str:
        """The object key of ``<name><suffix>`` under the prefix; a name with an empty,
        ``.`` or ``..`` part (which a sync to disk would follow) is refused."""
        if any(part in ("", ".", "..") or "\x00" in part for part in name.split("/")):
            raise StorageRefused(f"output name {name!r} is not a plain relative path")
        return f"{self.prefix}/{name}{suffix}" if self.prefix else f"{name}{suffix}"

    def clip_part_size(self) -> int:
        """The part size of a clip's upload: a clip at the cap must fit in S3's 10,000 parts."""
        return max(self.part_size, math.ceil(self.max_clip_bytes / MAX_PARTS))

    def open_clip(self, name: str) -> Sink:
        """A multipart upload of ``<prefix>/<name>.mp4``, completed by the commit."""
        key = self.key_for(name, ".mp4")
        return _UploadSink(self, name, MultipartUpload(self, key, self.clip_part_size()))

    def open_image(self, name: str, *, extension: str, content_type: str) -> Sink:
        """``<prefix>/<name>.<extension>``, put in one PUT (atomic) by the commit."""
        return _ObjectSink(self, self.key_for(name, f".{extension}"), content_type)

    def save_manifest(self, name: str, data: Mapping[str, object]) -> str:
        """Put ``<prefix>/<name>.json`` (a single PUT is atomic)."""
        key = self.key_for(name, ".json")
        body = json.dumps(dict(data), indent=2, sort_keys=True, default=str).encode() + b"\n"
        self.call(
            "PutObject",
            key,
            lambda: self.client.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType="application/json"
            ),
        )
        return self._uri(key)

    def check(self) -> str:
        """Create a multipart upload under the prefix, upload a part, abort it."""
        key = self.key_for(f".relaydance-check-{uuid.uuid4().hex}", "")
        upload = MultipartUpload(self, key, self.part_size)
        try:
            upload.write(b"relaydance storage check\n")
            upload.flush()
        finally:
            upload.abort()
        return (
            f"{self.where}: a multipart upload was created, took a part and was aborted; "
            "nothing was left"
        )

    def read(self, uri: str, *, max_bytes: int) -> bytes:
        """The object ``s3://bucket/key`` of this storage's bucket."""
        bucket, key = parse_s3_uri(uri)
        if bucket != self.bucket:
            raise StorageRefused(f"{uri} is not in the output bucket {self.bucket!r}")
        reply = self.call("get", key, lambda: self.client.get_object(Bucket=bucket, Key=key))
        body = reply["Body"]
        try:
            data = bytes(self.call("get", key, lambda: body.read(max_bytes + 1)))
        finally:
            body.close()
        if len(data) > max_bytes:
            raise StorageRefused(f"{uri} is over {max_bytes} bytes")
        return data

    def presigned_url(self, uri: str, *, expires_in: int | None = None) -> str:
        """A presigned GET URL of ``uri``, valid ``expires_in`` s (default: the setting)."""
        bucket, key = parse_s3_uri(uri)
        seconds = self.presign_seconds if expires_in is None else expires_in
        url = self.call(
            "presign",
            key,
            lambda: self.client.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=seconds
            ),
        )
        return str(url)

    def close(self) -> None:
        """Close the client's connection pool."""
        if self._client is not None:
            self._client.close()

    def call(self, operation: str, key: str, fn: Callable[[], Any]) -> Any:
        """Run one S3 call, turning boto errors into :class:`StorageError` with the fix."""
        try:
            return fn()
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, operation, key) from None

    def _error(self, exc: Exception, operation: str, key: str) -> StorageError:
        where = f"{operation} of {self._uri(key)}"
        if isinstance(exc, NoCredentialsError):
            return StorageRefused(
                f"{where}: no AWS credentials; set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, in the worker's environment"
            )
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "Unknown"))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            text = f"{where} answered {code} (HTTP {status}): {error.get('Message', '')}"
            if status >= 500 or code in _RETRYABLE:
                return StorageUnavailable(text, status_code=status)
            if code == "NoSuchBucket":
                return StorageRefused(f"{text}; create bucket {self.bucket!r} or fix "
                                      "RELAYDANCE_OUTPUT", status_code=status)  # fmt: skip
            return StorageRefused(f"{text}; {_RIGHTS}", status_code=status)
        # Connection refused, timeouts, a closed connection: botocore already retried.
        return StorageUnavailable(f"{where} failed: {type(exc).__name__}: {exc}")

    def _abort_others(self, key: str, *, keep: str) -> None:
        # Uploads of this key other than the one just committed were left by attempts that
        # died (or lost the race): the clip is complete, so none of them is needed.
        try:
            listing = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=key)
            stale = [u for u in listing.get("Uploads", [])
                     if u.get("Key") == key and u.get("UploadId") != keep]  # fmt: skip
            for upload in stale:
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=str(upload["UploadId"])
                )
        except (BotoCoreError, ClientError) as exc:
            logger.warning("could not abort stale uploads of %s: %s", self._uri(key), exc)
            return
        if stale:
            logger.info("aborted %d stale upload(s) of %s", len(stale), self._uri(key))

    def _uri(self, key: str) -> str:
        return f"{S3_SCHEME}{self.bucket}/{key}"


class _UploadSink(Sink):
    """A clip's multipart upload: completed by the commit, aborted otherwise."""

    def __init__(self, storage: S3Storage, name: str, upload: MultipartUpload) -> None:
        self.storage, self.name, self.upload = storage, name, upload

    def _write(self, data: bytes) -> None:
        self.upload.write(data)

    def _commit(self, *, sha256: str, seconds: float) -> StoredClip:
        upload, uri = self.upload, self.storage._uri(self.upload.key)
        etag = upload.complete()
        self.storage._abort_others(upload.key, keep=upload.upload_id)
        logger.info("uploaded %s to %s: %d bytes in %d parts, %.2f s",
                    self.name, uri, self.size, len(upload.parts), seconds)  # fmt: skip
        return StoredClip(uri=uri, size=self.size, sha256=sha256, seconds=seconds, etag=etag)

    def _abort(self) -> None:
        self.upload.abort()


class _ObjectSink(Sink):
    """A still, held in memory and put whole by the commit."""

    def __init__(self, storage: S3Storage, key: str, content_type: str) -> None:
        self.storage, self.key, self.content_type = storage, key, content_type
        self.body = bytearray()

    def _write(self, data: bytes) -> None:
        self.body += data

    def _commit(self, *, sha256: str, seconds: float) -> StoredClip:
        storage, key = self.storage, self.key
        answer = storage.call("PutObject", key, lambda: storage.client.put_object(
            Bucket=storage.bucket, Key=key, Body=bytes(self.body), ContentType=self.content_type
        ))  # fmt: skip
        return StoredClip(uri=storage._uri(key), size=self.size, sha256=sha256, seconds=seconds,
                          etag=str(answer.get("ETag", "")).strip('"'),
                          content_type=self.content_type)  # fmt: skip

    def _abort(self) -> None:
        self.body.clear()
