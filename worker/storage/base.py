"""The storage interface: what the download step needs from wherever clips (and stills) go."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from worker.provider.image_download import FetchedImage, fetch_image
from worker.provider.urlsafety import redact_url

__all__ = ["Storage", "StoredClip"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredClip:
    """A clip (or a still) committed under its final name: where, how big, its hash, time
    spent, and for a still its type and dimensions."""

    uri: str
    size: int
    sha256: str
    seconds: float
    path: Path | None = None  # on a local disk
    etag: str | None = None  # in a bucket
    content_type: str = "video/mp4"  # a still's: image/png, image/jpeg or image/webp
    width: int | None = None  # a still's, from its header
    height: int | None = None

    def record_fields(self) -> dict[str, object]:
        """The job record's fields for this clip; never a signed URL."""
        fields: dict[str, object] = {"output_uri": self.uri, "size": self.size}
        fields["sha256"] = self.sha256
        if self.path is not None:
            fields["output_path"] = str(self.path.resolve())
        if self.etag is not None:
            fields["etag"] = self.etag
        return fields

    def manifest_fields(self) -> dict[str, object]:
        """What a manifest says of the stored file: where, how big, its hash and type."""
        fields: dict[str, object] = {"uri": self.uri, "size": self.size, "sha256": self.sha256,
                                     "content_type": self.content_type}  # fmt: skip
        if self.etag is not None:
            fields["etag"] = self.etag
        if self.width is not None and self.height is not None:
            fields["width"], fields["height"] = self.width, self.height
        return fields


class Storage(ABC):
    """Takes a clip from its provider URL to its final name, and its manifest beside it.

    Every implementation commits a clip only once it is whole and checked, under a name
    fixed when the job was recorded (its id, or the path its batch's ``--output-name``
    gave it), so a retried delivery replaces, never duplicates. A name may hold ``/``.
    """

    #: What the storage is, for messages: a directory or ``s3://bucket/prefix``.
    where: str
    #: True when clips leave the worker's host (a bucket).
    remote: bool = False

    @abstractmethod
    def save_clip(
        self,
        url: str,
        *,
        name: str,
        client: httpx.Client,
        max_bytes: int,
        allow_local: bool,
        overall_timeout: float,
        on_progress: Callable[[int], None] | None = None,
    ) -> StoredClip:
        """Stream the clip at ``url`` to ``<name>.mp4``, checked, capped and hashed.

        Raises the download errors of :mod:`worker.provider.download`, and
        :class:`~worker.errors.StorageError` when the storage will not take it.
        """

    def save_image(
        self,
        url: str,
        *,
        name: str,
        client: httpx.Client,
        max_bytes: int,
        allow_local: bool,
        overall_timeout: float,
        manifest: Mapping[str, object] | None = None,
    ) -> StoredClip:
        """Download the still at ``url`` to ``<name>.png`` (``.jpg``, ``.webp``: by its real
        signature), checked, capped, hashed and committed whole; with ``manifest`` given,
        write it as ``<name>.json`` beside the image, with the image's own facts added.

        Raises the download errors of :mod:`worker.provider.image_download` (an image that
        is not PNG, JPEG or WebP is ``DownloadRejected``), and
        :class:`~worker.errors.StorageError` when the storage will not take it.
        """
        image = fetch_image(url, client=client, max_bytes=max_bytes, allow_local=allow_local,
                            overall_timeout=overall_timeout)  # fmt: skip
        stored = self.put_image(name, image)
        logger.info("stored image %s as %s: %s %sx%s, %d bytes in %.2f s", redact_url(url),
                    stored.uri, image.format.name, image.width, image.height, image.size,
                    image.seconds)  # fmt: skip
        if manifest is not None:
            self.save_manifest(name, {**manifest, **stored.manifest_fields()})
        return stored

    @abstractmethod
    def put_image(self, name: str, image: FetchedImage) -> StoredClip:
        """Commit a downloaded, checked image as ``<name>.<its extension>``, whole or not at
        all, beside the clips; a second put of the same name replaces the first."""

    @abstractmethod
    def save_manifest(self, name: str, data: Mapping[str, object]) -> str:
        """Store ``data`` as ``<name>.json`` beside the clip; return its URI."""

    @abstractmethod
    def check(self) -> str:
        """Prove that clips can be written here, leaving nothing behind; say what was done.

        Raises :class:`~worker.errors.StorageError` naming the problem and the fix.
        """

    def clean_partials(self, name: str, *, older_than: float) -> None:  # noqa: B027
        """Remove what a killed delivery of ``name`` left behind (nothing, by default)."""

    def presigned_url(self, uri: str, *, expires_in: int | None = None) -> str | None:
        """A time-limited HTTPS URL to read a stored clip, or None where there is none."""
        return None

    def close(self) -> None:  # noqa: B027 - most storages hold nothing to release
        """Release connections."""
