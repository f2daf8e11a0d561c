"""The permissions of files the fleet delivers: what ``cp`` would give them, or a setting.

A temp file is created ``-rw-------`` (it must be: nobody should read half a clip); the
finished file is then given ``0666`` less the process's umask, as ``cp`` and every editor
give a new file, so an account or a web server that shares the volume can read clips
where the umask lets it. ``RELAYDANCE_OUTPUT_MODE`` overrides the umask for clips and
manifests, and directories created for them get the matching search bits.

The umask is read from ``/proc/self/status`` where there is one: setting and restoring it
(the only portable way to read it) would change it for every thread of a threaded worker
for a moment.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

__all__ = ["directory_mode", "new_file_mode", "process_umask"]

_STATUS = Path("/proc/self/status")
_UMASK = re.compile(r"^Umask:\s*([0-7]+)\s*$", re.MULTILINE)
_lock = threading.Lock()


def process_umask() -> int:
    """The process's umask, read without changing it where the system allows."""
    try:
        found = _UMASK.search(_STATUS.read_text())
    except OSError:
        found = None
    if found is not None:
        return int(found.group(1), 8)
    with _lock:  # no /proc: set it and put it back at once
        current = os.umask(0o077)
        os.umask(current)
    return current


def new_file_mode(configured: int | None = None) -> int:
    """A delivered file's permissions: ``configured``, else 0666 less the umask."""
    if configured is not None:
        return configured
    return 0o666 & ~process_umask()


def directory_mode(file_mode: int) -> int:
    """A directory's permissions for files of ``file_mode``: search wherever read is allowed."""
    return file_mode | ((file_mode & 0o444) >> 2)
