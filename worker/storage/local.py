"""Clips in a local directory (or a shared mount): the fleet's original output.

A clip is ``<dir>/<name>.mp4`` with ``<name>.json`` beside it; ``name`` is the job id, or
the path a batch's ``--output-name`` template gave it (``shoot/0001-a-paper-boat``), whose
subdirectories are created on the way. Each file is written to a temp file beside its final
name, given its permissions, synced and renamed into place, so a reader never sees a
partial file or one with other permissions. Permissions are those ``cp`` would give a new
file (0666 less the worker's umask), or ``RELAYDANCE_OUTPUT_MODE``.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx

from worker.errors import StorageError, StorageRefused, StorageUnavailable
from worker.provider.download import cleanup_partials, stream_video
from worker.provider.files import atomic_file
from worker.provider.image_download import FetchedImage
from worker.provider.urlsafety import redact_url
from worker.storage.base import Storage, StoredClip
from worker.storage.modes import directory_mode, new_file_mode

__all__ = ["LocalStorage"]

logger = logging.getLogger(__name__)

# Errors that an operator must fix (rights, a missing or read-only mount); anything else
# (a full disk, an I/O error) may pass by itself.
_REFUSED = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR})


def _storage_error(exc: OSError, directory: Path) -> StorageError:
    what = f"cannot write to {directory}: {exc.strerror or exc}"
    if exc.errno in _REFUSED:
        return StorageRefused(f"{what}; create it and let the worker's user write there")
    return StorageUnavailable(f"{what}; free space or fix the disk, the clip is kept")


class LocalStorage(Storage):
    """Writes ``<dir>/<name>.mp4`` (temp file, mode, fsync, rename) and ``<name>.json``."""

    def __init__(self, directory: Path, *, mode: int | None = None) -> None:
        self.directory = Path(directory)
        self.where = str(self.directory)
        self.mode = mode  # RELAYDANCE_OUTPUT_MODE; None: 0666 less the umask

    def _target(self, name: str, suffix: str) -> Path:
        """``<dir>/<name><suffix>``, its directories made; a name that would leave the
        directory (absolute, ``..``, a hidden part, a link out) is refused."""
        parts = name.split("/")
        if any(not p or p.startswith(".") or "\\" in p or "\x00" in p for p in parts):
            raise StorageRefused(f"output name {name!r} is not a plain relative path")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            folder = self.directory
            for part in parts[:-1]:
                folder = folder / part
                if not folder.is_dir():
                    folder.mkdir(exist_ok=True)
                    if self.mode is not None:  # else mkdir's 0777 less the umask, as mkdir(1)
                        folder.chmod(directory_mode(self.mode))
            base = self.directory.resolve()
        except OSError as exc:
            raise _storage_error(exc, self.directory) from None
        if folder.resolve() != base and base not in folder.resolve().parents:
            raise StorageRefused(f"output name {name!r} leads out of {self.directory}")
        return folder / f"{parts[-1]}{suffix}"

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
        """Stream the clip into place through :func:`~worker.provider.download.stream_video`."""
        target = self._target(name, ".mp4")
        try:
            with atomic_file(target) as handle:
                os.fchmod(handle.fileno(), new_file_mode(self.mode))
                got = stream_video(url, handle, client=client, max_bytes=max_bytes,
                                   allow_local=allow_local, overall_timeout=overall_timeout,
                                   on_progress=on_progress)  # fmt: skip
        except OSError as exc:
            raise _storage_error(exc, self.directory) from None
        logger.info("downloaded %s to %s: %d bytes in %.2f s", redact_url(url), target,
                    got.size, got.seconds)  # fmt: skip
        return StoredClip(uri=target.resolve().as_uri(), size=got.size, sha256=got.sha256,
                          seconds=got.seconds, path=target)  # fmt: skip

    def put_image(self, name: str, image: FetchedImage) -> StoredClip:
        """Write ``<dir>/<name>.<ext>`` atomically (temp file, mode, fsync, rename)."""
        target = self._target(name, f".{image.format.extension}")
        try:
            with atomic_file(target) as handle:
                os.fchmod(handle.fileno(), new_file_mode(self.mode))
                handle.write(image.data)
        except OSError as exc:
            raise _storage_error(exc, self.directory) from None
        return StoredClip(uri=target.resolve().as_uri(), size=image.size, sha256=image.sha256,
                          seconds=image.seconds, path=target,
                          content_type=image.format.content_type, width=image.width,
                          height=image.height)  # fmt: skip

    def save_manifest(self, name: str, data: Mapping[str, object]) -> str:
        """Write ``<dir>/<name>.json`` atomically, with the clip's permissions."""
        target = self._target(name, ".json")
        body = json.dumps(dict(data), indent=2, sort_keys=True, default=str).encode() + b"\n"
        try:
            with atomic_file(target, suffix=".json.part") as handle:
                os.fchmod(handle.fileno(), new_file_mode(self.mode))
                handle.write(body)
        except OSError as exc:
            raise _storage_error(exc, self.directory) from None
        return target.resolve().as_uri()

    def clean_partials(self, name: str, *, older_than: float) -> None:
        """Remove temp files a killed delivery of ``name`` left, untouched ``older_than`` s."""
        folder, _, base = f"/{name}".rpartition("/")
        directory = self.directory / folder.lstrip("/")
        if directory.is_dir():
            cleanup_partials(directory, base, older_than=older_than)

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
