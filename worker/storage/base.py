"""The storage interface: where clips (and stills) go, as bytes under a name.

The storage knows nothing of HTTP: it hands out a :class:`~worker.storage.sink.Sink` for
a name and commits what was written into it. Whoever opens the sink (the job's download
step) decides what flows in.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping

from worker.storage.sink import Sink

__all__ = ["Storage"]


class Storage(ABC):
    """Takes a clip's bytes to their final name, and its manifest beside it.

    Every implementation shows a clip only once its sink is committed (whole, and checked
    by whoever wrote it), under a name fixed when the job was recorded (its id, or the
    path its batch's ``--output-name`` gave it), so a retried delivery replaces, never
    duplicates. A name may hold ``/``.
    """

    #: What the storage is, for messages: a directory or ``s3://bucket/prefix``.
    where: str
    #: True when clips leave the worker's host (a bucket).
    remote: bool = False

    @abstractmethod
    def open_clip(self, name: str) -> Sink:
        """A sink for ``<name>.mp4``: nothing is visible under that name until it commits.

        Raises :class:`~worker.errors.StorageError` when the storage will not take it.
        """

    @abstractmethod
    def open_image(self, name: str, *, extension: str, content_type: str) -> Sink:
        """A sink for the still ``<name>.<extension>`` (``png``, ``jpg``, ``webp``: by the
        image's real signature), beside the clips, committed whole or not at all.

        Raises :class:`~worker.errors.StorageError` when the storage will not take it.
        """

    @abstractmethod
    def save_manifest(self, name: str, data: Mapping[str, object]) -> str:
        """Store ``data`` as ``<name>.json`` beside the clip; return its URI."""

    @abstractmethod
    def check(self) -> str:
        """Prove that clips can be written here, leaving nothing behind; say what was done.

        Raises :class:`~worker.errors.StorageError` naming the problem and the fix.
        """

    @abstractmethod
    def read(self, uri: str, *, max_bytes: int) -> bytes:
        """The bytes of a file this storage stored (a still, to upload it again), by the
        ``uri`` its commit gave; at most ``max_bytes``.

        Raises :class:`~worker.errors.StorageError` when it is gone, unreadable or bigger.
        """

    def presigned_url(self, uri: str, *, expires_in: int | None = None) -> str | None:
        """A time-limited HTTPS URL to read a stored clip, or None where there is none."""
        return None

    def close(self) -> None:  # noqa: B027 - most storages hold nothing to release
        """Release connections."""
