"""Clips in a local directory (or a shared mount): the fleet's original output."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx

from worker.errors import StorageError, StorageRefused, StorageUnavailable
from worker.provider.download import download_video
from worker.provider.files import write_manifest
from worker.storage.base import Storage, StoredClip

__all__ = ["LocalStorage"]

# Errors that an operator must fix (rights, a missing or read-only mount); anything else
# (a full disk, an I/O error) may pass by itself.
_REFUSED = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR})


def _storage_error(exc: OSError, directory: Path) -> StorageError:
    what = f"cannot write to {directory}: {exc.strerror or exc}"
    if exc.errno in _REFUSED:
        return StorageRefused(f"{what}; create it and let the worker's user write there")
    return StorageUnavailable(f"{what}; free space or fix the disk, the clip is kept")


class LocalStorage(Storage):
    """Writes ``<dir>/<job id>.mp4`` (temp file, fsync, rename) and ``<job id>.json``."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.where = str(self.directory)

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
        """Download into the directory through :func:`~worker.provider.download.download_video`."""
        try:
            result = download_video(
                url,
                dest_dir=self.directory,
                name=name,
                client=client,
                max_bytes=max_bytes,
                allow_local=allow_local,
                overall_timeout=overall_timeout,
                on_progress=on_progress,
            )
        except OSError as exc:
            raise _storage_error(exc, self.directory) from None
        return StoredClip(
            uri=result.path.resolve().as_uri(),
            size=result.size,
            sha256=result.sha256,
            seconds=result.seconds,
            path=result.path,
        )

    def save_manifest(self, name: str, data: Mapping[str, object]) -> str:
        """Write ``<dir>/<name>.json`` atomically."""
        try:
            path = write_manifest(self.directory / f"{name}.json", data)
        except OSError as exc:
            raise _storage_error(exc, self.directory) from None
        return path.resolve().as_uri()

    def check(self) -> str:
        """Create the directory if needed, then write, fsync and remove a probe file."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(
                dir=self.directory, prefix=".relaydance-check-", suffix=".tmp"
            ) as probe:
                probe.write(b"relaydance storage check\n")
                probe.flush()
                os.fsync(probe.fileno())
        except OSError as exc:
            raise _storage_error(exc, self.directory) from None
        return f"{self.directory.resolve()}: a probe file was written, fsynced and removed"
