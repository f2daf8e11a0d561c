"""Clips in a local directory (or a shared mount): the fleet's original output.

A clip is ``<dir>/<name>.mp4`` with ``<name>.json`` beside it; ``name`` is the job id, or
the path a batch's ``--output-name`` template gave it (``shoot/0001-a-paper-boat``), whose
subdirectories are created on the way. Each file is written to a temp file beside its final
name, given its permissions, synced and renamed into place, so a reader never sees a
partial file or one with other permissions. Permissions are those ``cp`` would give a new
file (0666 less the worker's umask), or ``RELAYDANCE_OUTPUT_MODE``. Opening a name first
removes the temp files a killed write of it left (:mod:`worker.storage.files`).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit

from worker.errors import StorageError, StorageRefused, StorageUnavailable
from worker.storage.base import Storage
from worker.storage.files import TempFile, cleanup_partials
from worker.storage.modes import directory_mode, new_file_mode
from worker.storage.sink import Sink, StoredClip

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

    #: A temp file untouched this long has no live writer: a download writes as bytes
    #: arrive, and its job gives it up (worker/job/deliver.py) after as long without any.
    stale_after = 15.0

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

    def open_clip(self, name: str) -> Sink:
        """A temp file beside ``<dir>/<name>.mp4``, renamed onto it by the commit."""
        return self._open(name, ".mp4", "video/mp4")

    def open_image(self, name: str, *, extension: str, content_type: str) -> Sink:
        """A temp file beside ``<dir>/<name>.<extension>``, renamed onto it by the commit."""
        return self._open(name, f".{extension}", content_type)

    def _open(self, name: str, suffix: str, content_type: str) -> Sink:
        target = self._target(name, suffix)
        try:
            # What a killed write of this name left: its writer stopped long enough ago.
            cleanup_partials(target.parent, target.stem, older_than=self.stale_after)
            temp = TempFile(target, mode=new_file_mode(self.mode))
        except OSError as exc:
            raise _storage_error(exc, self.directory) from None
        return _FileSink(temp, self.directory, content_type)

    def save_manifest(self, name: str, data: Mapping[str, object]) -> str:
        """Write ``<dir>/<name>.json`` atomically, with the clip's permissions."""
        target = self._target(name, ".json")
        body = json.dumps(dict(data), indent=2, sort_keys=True, default=str).encode() + b"\n"
        try:
            with TempFile(target, mode=new_file_mode(self.mode), suffix=".json.part") as temp:
                temp.write(body)
                temp.commit()
        except OSError as exc:
            raise _storage_error(exc, self.directory) from None
        return target.resolve().as_uri()

    def read(self, uri: str, *, max_bytes: int) -> bytes:
        """The stored file ``file:///...``, which must lie under the directory."""
        parsed = urlsplit(uri)
        path = Path(unquote(parsed.path))
        base = self.directory.resolve()
        if parsed.scheme != "file" or base not in path.resolve().parents:
            raise StorageRefused(f"{uri} is not a file stored under {self.directory}")
        try:
            with path.open("rb") as handle:
                data = handle.read(max_bytes + 1)
        except OSError as exc:
            raise StorageRefused(f"cannot read {path}: {exc.strerror or exc}") from None
        if len(data) > max_bytes:
            raise StorageRefused(f"{path} is over {max_bytes} bytes")
        return data

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


class _FileSink(Sink):
    """A temp file in the output directory, its OS errors told as storage errors."""

    def __init__(self, temp: TempFile, directory: Path, content_type: str) -> None:
        self.temp, self.directory, self.content_type = temp, directory, content_type

    def _write(self, data: bytes) -> None:
        try:
            self.temp.write(data)
        except OSError as exc:
            raise _storage_error(exc, self.directory) from None

    def _commit(self, *, sha256: str, seconds: float) -> StoredClip:
        try:
            self.temp.commit()
        except OSError as exc:
            raise _storage_error(exc, self.directory) from None
        target = self.temp.target
        logger.info("stored %s: %d bytes in %.2f s", target, self.size, seconds)
        return StoredClip(uri=target.resolve().as_uri(), size=self.size, sha256=sha256,
                          seconds=seconds, path=target, content_type=self.content_type)  # fmt: skip

    def _abort(self) -> None:
        self.temp.discard()
