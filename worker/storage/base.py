"""The storage interface: what the download step needs from wherever clips go."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

__all__ = ["Storage", "StoredClip"]


@dataclass(frozen=True)
class StoredClip:
    """A clip committed under its final name: where, how big, its hash, time spent."""

    uri: str
    size: int
    sha256: str
    seconds: float
    path: Path | None = None  # on a local disk
    etag: str | None = None  # in a bucket

    def record_fields(self) -> dict[str, object]:
        """The job record's fields for this clip; never a signed URL."""
        fields: dict[str, object] = {"output_uri": self.uri, "size": self.size}
        fields["sha256"] = self.sha256
        if self.path is not None:
            fields["output_path"] = str(self.path.resolve())
        if self.etag is not None:
            fields["etag"] = self.etag
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
