"""Local media files: only from the allowed directories, checked twice.

A render request may name local files, which the ``prepare`` step uploads to the provider.
Without a rule, any readable file that looks like media could be sent off the machine, so
``RELAYDANCE_MEDIA_DIRS`` is an allow-list of absolute directories. Unset, no local file is
taken: the list must be the same wherever a request is checked, and a default drawn from
the working directory differs between the process that enqueues (a shell, a web app) and
the worker that uploads, which then refused what the producer had let through. Every path
is resolved (``~`` expanded, symlinks followed, ``..`` collapsed) and must fall inside one
of the directories, and the file must be a format its field accepts
(:mod:`worker.render.media`). The producer checks at validation; the worker checks again
with its own settings just before it opens the file, opens the very path it checked
without following a last-moment symlink, and compares where the open file really is, so a
swap after validation cannot redirect the upload.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from worker.render.media import HEAD_BYTES, MediaFormat, MediaKind, accepted_names, identify

if TYPE_CHECKING:
    from config.parts.storage import StorageSettings

__all__ = [
    "MediaFileRefused",
    "allowed_dirs",
    "check_file",
    "expected_kind",
    "open_media",
]

_FIX = "move the file into one of them, or add its directory to RELAYDANCE_MEDIA_DIRS"
_UNSET = (
    "RELAYDANCE_MEDIA_DIRS is unset, so no local file may be used; set it to the absolute "
    "directories media may come from (the same value for the producer and the workers, "
    "e.g. RELAYDANCE_MEDIA_DIRS=/srv/media), or give a URL"
)
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)  # a FIFO swapped in must not hang the worker
    | getattr(os, "O_CLOEXEC", 0)
)


class MediaFileRefused(ValueError):
    """A local media file that may not be used; the message names the fix."""


def allowed_dirs(settings: StorageSettings | None = None) -> tuple[Path, ...]:
    """The resolved directories local media may come from, by ``settings`` (else the process's).

    The same settings give the same list in every process, wherever it runs: nothing is
    taken from the working directory. Empty when ``RELAYDANCE_MEDIA_DIRS`` is unset.
    """
    if settings is None:
        from config.settings import get_settings

        settings = get_settings()
    return _resolved_dirs(settings.media_dirs or "")


@lru_cache(maxsize=64)
def _resolved_dirs(media_dirs: str) -> tuple[Path, ...]:
    # Resolved once per configuration: validation runs on every request. The settings
    # refuse relative entries, so the working directory never enters here.
    dirs = [Path(d.strip()).expanduser() for d in media_dirs.split(os.pathsep) if d.strip()]
    return tuple(d.resolve() for d in dirs if d.is_absolute())


def expected_kind(field_kind: str) -> MediaKind:
    """The media kind a request entry holds: frames are images."""
    return "image" if field_kind in ("image", "first_frame", "last_frame") else field_kind  # type: ignore[return-value]


def _inside(resolved: str, dirs: Sequence[Path]) -> bool:
    for directory in dirs:
        text = str(directory)
        if resolved == text or resolved.startswith(text.rstrip(os.sep) + os.sep):
            return True
    return False


def _resolve(source: str, dirs: Sequence[Path]) -> str:
    """The real path of ``source`` (string work: this runs for every file of every request)."""
    if "\x00" in source:  # no file system takes it
        raise MediaFileRefused(f"local file {source!r} has a NUL character; give a real path")
    path = os.path.expanduser(source)
    if path.startswith("~"):  # "~user/..." for a user with no home directory
        raise MediaFileRefused(f"local file {source!r}: unknown home directory; give a full path")
    absolute = os.path.abspath(path)
    try:
        resolved = os.path.realpath(absolute)
    except (OSError, RuntimeError):  # a symlink loop
        raise MediaFileRefused(
            f"local file {source!r} cannot be resolved (a symlink loop?); check the path"
        ) from None
    if not dirs:
        raise MediaFileRefused(f"local file {source!r} cannot be used: {_UNSET}")
    if not _inside(resolved, dirs):
        how = " (through a symlink or '..')" if resolved != absolute else ""
        where = ", ".join(str(d) for d in dirs) or "none"
        raise MediaFileRefused(
            f"local file {source!r} is outside the directories media may come from{how} "
            f"({where}); {_FIX}"
        )
    return resolved


def _check_format(source: str, head: bytes, expected: MediaKind) -> MediaFormat:
    found = identify(head)
    if found is None:
        raise MediaFileRefused(
            f"{source!r} is not a recognised media file; give {_article(expected)} "
            f"{expected} file ({accepted_names(expected)})"
        )
    if found.kind != expected:
        raise MediaFileRefused(
            f"{source!r} is {_article(found.kind)} {found.kind} file; give "
            f"{_article(expected)} {expected} file"
        )
    if not found.accepted:
        raise MediaFileRefused(
            f"{source!r} is a {found.name} {found.kind}, which the providers do not take; "
            f"convert it to {accepted_names(expected)}"
        )
    return found


def check_file(source: str, expected: MediaKind, dirs: Sequence[Path]) -> tuple[str | None, str]:
    """(why ``source`` may not be used as ``expected`` media or None, its resolved path)."""
    try:
        resolved = _resolve(source, dirs)
        try:
            mode = os.stat(resolved).st_mode
        except OSError:
            mode = 0
        if not stat.S_ISREG(mode):
            what = "is a directory, not a file" if stat.S_ISDIR(mode) else "does not exist"
            return f"local file {source!r} {what}; check the path", resolved
        try:
            with open(resolved, "rb", buffering=0) as fh:
                head = fh.read(HEAD_BYTES)
        except OSError as exc:
            return f"local file {source!r} cannot be read ({exc.strerror}); check it", resolved
        _check_format(source, head, expected)
    except MediaFileRefused as exc:
        return str(exc), source
    return None, resolved


def _opened_path(fd: int, resolved: str, status: os.stat_result) -> bool:
    """Whether the open file ``fd`` is the file at ``resolved`` (no swap in between)."""
    proc = f"/proc/self/fd/{fd}"
    if os.path.exists(proc):
        return os.readlink(proc) == resolved
    try:
        return os.path.samestat(status, os.stat(resolved, follow_symlinks=False))
    except OSError:
        return False


def open_media(source: str, expected: MediaKind, dirs: Sequence[Path]) -> tuple[BinaryIO, str]:
    """Open a checked local file for upload: (binary handle at 0, content type).

    ``source`` is the resolved path the producer recorded; it must still resolve to
    itself, lie inside ``dirs`` and hold ``expected`` media. Raises
    :class:`MediaFileRefused` (and OSError when it cannot be opened).
    """
    resolved = _resolve(source, dirs)
    if resolved != source:
        raise MediaFileRefused(
            f"local file {source!r} now resolves elsewhere (a symlink or '..' changed "
            "since the request was checked); render it again with the real path"
        )
    fd = os.open(resolved, _OPEN_FLAGS)
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise MediaFileRefused(f"local file {source!r} is not a regular file; check it")
        if not _opened_path(fd, resolved, status):
            raise MediaFileRefused(f"local file {source!r} changed while it was opened")
        os.set_blocking(fd, True)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    try:
        found = _check_format(source, handle.read(HEAD_BYTES), expected)
        handle.seek(0)
    except BaseException:
        handle.close()
        raise
    return handle, found.content_type


def _article(kind: str) -> str:
    return "an" if kind[:1] in ("a", "e", "i", "o", "u") else "a"
