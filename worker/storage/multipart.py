"""One S3 multipart upload, written like a file.

:meth:`MultipartUpload.write` gathers the stream into parts of ``part_size`` bytes and
uploads each one as it fills, so memory holds one part whatever the clip's size. Nothing
is visible under the key until :meth:`complete`; :meth:`abort` discards the parts.

Parts go up one at a time, in the thread that reads the provider's body: a worker runs
many deliveries at once, which keeps its links busy without overlapping download and
upload inside one delivery, and one part per delivery keeps memory lowest (on loopback
the S3 server, not the worker, bounds a delivery's speed: docs/benchmarks.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, cast

from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

__all__ = ["MultipartUpload", "UploadTarget"]

logger = logging.getLogger(__name__)


class UploadTarget(Protocol):
    """What an upload needs of its storage (:class:`~worker.storage.s3.S3Storage`).

    Declared here so that the storage depends on its uploads and not the reverse.
    """

    @property
    def bucket(self) -> str:
        """The bucket the clip goes to."""

    @property
    def client(self) -> S3Client:
        """The S3 client."""

    def call(self, operation: str, key: str, fn: Callable[[], Any]) -> Any:
        """Run one S3 call, turning boto errors into storage errors."""


class MultipartUpload:
    """Created on construction; :meth:`complete` commits it, :meth:`abort` discards it."""

    def __init__(self, storage: UploadTarget, key: str, part_size: int) -> None:
        self.storage, self.key, self.part_size = storage, key, part_size
        self.parts: list[CompletedPartTypeDef] = []
        self._buffer = bytearray()
        created = storage.call(
            "CreateMultipartUpload",
            key,
            lambda: storage.client.create_multipart_upload(
                Bucket=storage.bucket, Key=key, ContentType="video/mp4"
            ),
        )
        self.upload_id = str(created["UploadId"])
        self._open = True  # neither completed nor aborted yet

    def write(self, data: bytes, /) -> None:
        """Buffer ``data``; upload a part each time ``part_size`` bytes have gathered.

        Every part but the last is exactly ``part_size`` bytes: R2, for one, requires
        equal parts, whatever sizes the body arrives in.
        """
        self._buffer += data
        while len(self._buffer) >= self.part_size:
            if len(self._buffer) == self.part_size:
                self.flush()
            else:
                rest = self._buffer[self.part_size :]
                del self._buffer[self.part_size :]
                self.flush()
                self._buffer = rest

    def flush(self) -> None:
        """Upload what is buffered as the next part."""
        body, self._buffer = self._buffer, bytearray()
        number = len(self.parts) + 1
        storage = self.storage
        answer = storage.call(
            "UploadPart",
            self.key,
            lambda: storage.client.upload_part(
                Bucket=storage.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                PartNumber=number,
                Body=cast(bytes, body),  # botocore sends a bytearray as it is, uncopied
            ),
        )
        self.parts.append({"ETag": answer["ETag"], "PartNumber": number})

    def complete(self) -> str:
        """Upload the last part and commit the object; return its ETag, unquoted."""
        if self._buffer or not self.parts:
            self.flush()
        storage = self.storage
        answer = storage.call(
            "CompleteMultipartUpload",
            self.key,
            lambda: storage.client.complete_multipart_upload(
                Bucket=storage.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": self.parts},
            ),
        )
        self._open = False
        return str(answer.get("ETag", "")).strip('"')

    def abort(self) -> None:
        """Abort the upload unless it was completed; never raises (it runs on failures)."""
        if not self._open:
            return
        self._open = False
        try:
            self.storage.client.abort_multipart_upload(
                Bucket=self.storage.bucket, Key=self.key, UploadId=self.upload_id
            )
        except (BotoCoreError, ClientError) as exc:
            # The attempt that commits the clip, or the lifecycle rule, aborts it later.
            logger.warning("could not abort an upload of %s: %s", self.key, exc)
