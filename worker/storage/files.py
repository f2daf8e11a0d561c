"""Files that appear whole or not at all: a clip, a still or a manifest is written to a temp
file beside its final name, given its permissions, synced, and renamed into place; a
failure leaves neither.

A temp file is created ``-rw-------`` (nobody should read half a clip) and named
``.<name>.<random>.part``. A worker killed mid-write leaves it behind;
:func:`cleanup_partials` removes those once nothing writes them any more.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Self

__all__ = ["TempFile", "cleanup_partials"]

logger = logging.getLogger(__name__)


def _fsync_dir(directory: Path) -> None:
    # The rename is only durable once the directory entry itself is on disk.
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class TempFile:
    """A temp file beside ``target``: :meth:`commit` renames it onto ``target`` with
    ``mode``, synced; :meth:`discard` (or leaving a ``with`` block uncommitted) removes it.

    Raises :class:`OSError` as the file system does; ``target`` is left as it was.
    """

    def __init__(self, target: Path, *, mode: int, suffix: str = ".part") -> None:
        self.target, self.mode = target, mode
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=suffix)
        self.path = Path(name)
        self.handle = os.fdopen(fd, "wb")
        self.committed = False

    def write(self, data: bytes) -> None:
        """Append ``data``."""
        self.handle.write(data)

    def commit(self) -> None:
        """Give the file its mode, sync it, rename it onto the target, sync the directory."""
        try:
            self.handle.flush()
            os.fchmod(self.handle.fileno(), self.mode)  # the readers' mode, only once whole
            os.fsync(self.handle.fileno())
            self.handle.close()
            os.replace(self.path, self.target)
        except BaseException:
            self.discard()
            raise
        self.committed = True
        _fsync_dir(self.target.parent)

    def discard(self) -> None:
        """Close and remove the temp file; never raises (it runs on failures)."""
        with contextlib.suppress(OSError):
            self.handle.close()
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.committed:
            self.discard()


def cleanup_partials(directory: Path, name: str, *, older_than: float = 0.0) -> int:
    """Remove temp files a killed write of ``name`` left in ``directory``; return how many.

    Only files untouched for ``older_than`` seconds go: a download still writing its temp
    file (another worker's, not yet noticed as superseded) keeps it.
    """
    removed = 0
    cutoff = time.time() - older_than
    for leftover in directory.glob(f".{glob.escape(name)}.*.part"):
        with contextlib.suppress(FileNotFoundError):
            if older_than and leftover.stat().st_mtime > cutoff:
                continue
            leftover.unlink()
            removed += 1
    if removed:
        logger.info("removed %d partial write(s) of %s in %s", removed, name, directory)
    return removed
