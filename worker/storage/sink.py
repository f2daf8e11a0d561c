"""Where the bytes of a clip (or a still) go on their way to the output, and what comes back.

A :class:`Sink` is the one thing the storage and the download share: the download writes
bytes into it and knows nothing else of the storage; the storage commits them under
their final name, or discards them, and knows nothing of where they came from. The job
step opens one, streams into it and commits it::

    with storage.open_clip(name) as sink:
        streamed = stream_video(url, sink, ...)  # worker.provider.download
        clip = sink.commit(sha256=streamed.sha256, seconds=streamed.seconds)

Leaving the block without a commit, by an exception or not, discards what was written.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Self

__all__ = ["Sink", "SinkClosed", "StoredClip"]


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


class SinkClosed(RuntimeError):
    """A sink was written to or committed after it was committed or aborted."""


class Sink(ABC):
    """Bytes on their way to one final name: :meth:`write` them, then :meth:`commit` or
    :meth:`abort`. Nothing is visible under the final name before the commit returns.

    Storage errors (:class:`~worker.errors.StorageError`) come from any of the three.
    """

    #: Bytes written so far.
    size: int = 0
    _finished = False

    def write(self, data: bytes, /) -> None:
        """Add ``data`` to what the sink holds."""
        if self._finished:
            raise SinkClosed("write to a sink that was committed or aborted")
        self._write(data)
        self.size += len(data)

    def commit(self, *, sha256: str, seconds: float) -> StoredClip:
        """Put what was written under the final name, whole, replacing what was there.

        ``sha256`` and ``seconds`` are the writer's account of the bytes (the download
        hashes them as they pass); a failed commit discards them.
        """
        if self._finished:
            raise SinkClosed("commit of a sink that was committed or aborted")
        self._finished = True
        try:
            return self._commit(sha256=sha256, seconds=seconds)
        except BaseException:
            self._abort()
            raise

    def abort(self) -> None:
        """Discard what was written, unless it was committed; never raises."""
        if not self._finished:
            self._finished = True
            self._abort()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()

    @abstractmethod
    def _write(self, data: bytes) -> None:
        """Hold ``data`` (a temp file, a part being filled)."""

    @abstractmethod
    def _commit(self, *, sha256: str, seconds: float) -> StoredClip:
        """Make the bytes visible under the final name; return where they are."""

    @abstractmethod
    def _abort(self) -> None:
        """Discard the bytes; never raises (it runs on failures)."""
