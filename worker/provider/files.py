"""Files that appear whole or not at all: a clip or its manifest is written to a temp file
beside its final name, synced, and renamed into place; a failure leaves neither.

A worker killed mid-write leaves its temp file (``.<name>.<random>.part``) behind;
:func:`cleanup_partials` removes those once nothing writes them any more.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

__all__ = ["atomic_file", "check_name", "cleanup_partials", "write_manifest"]

logger = logging.getLogger(__name__)


def check_name(name: str) -> None:
    """Refuse a name that is not a plain file name (it could escape the directory)."""
    if not name or name.startswith(".") or "/" in name or "\\" in name or "\x00" in name:
        raise ValueError(f"download name must be a plain file name, got {name!r}")


def _fsync_dir(directory: Path) -> None:
    # The rename is only durable once the directory entry itself is on disk.
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(target: Path, *, suffix: str = ".part") -> Iterator[IO[bytes]]:
    """A temp file beside ``target``, renamed onto it (synced) when the block ends well.

    On any exception the temp file goes and ``target`` is left as it was.
    """
    with tempfile.NamedTemporaryFile(
        dir=target.parent, prefix=f".{target.stem}.", suffix=suffix, delete=False
    ) as handle:
        tmp_path = Path(handle.name)
        try:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        except BaseException:
            tmp_path.unlink(missing_ok=True)
            raise
    try:
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def write_manifest(path: Path, data: Mapping[str, object]) -> Path:
    """Write ``data`` as JSON to ``path`` with a ``.json`` suffix, atomically; return it."""
    target = path.with_suffix(".json")
    body = json.dumps(dict(data), indent=2, sort_keys=True, default=str).encode() + b"\n"
    with atomic_file(target, suffix=".json.part") as handle:
        handle.write(body)
    return target


def cleanup_partials(dest_dir: Path, name: str, *, older_than: float = 0.0) -> int:
    """Remove temp files a killed attempt left for ``name``; return how many went.

    Only files untouched for ``older_than`` seconds go: a download still writing its temp
    file (another worker's, not yet noticed as superseded) keeps it.
    """
    check_name(name)
    removed = 0
    cutoff = time.time() - older_than
    for leftover in dest_dir.glob(f".{glob.escape(name)}.*.part"):
        with contextlib.suppress(FileNotFoundError):
            if older_than and leftover.stat().st_mtime > cutoff:
                continue
            leftover.unlink()
            removed += 1
    if removed:
        logger.info("removed %d partial download(s) of %s in %s", removed, name, dest_dir)
    return removed
