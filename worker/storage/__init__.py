"""Where finished clips go: a local directory (the default) or an S3-compatible bucket.

Generated stills go beside them (:meth:`Storage.open_image`: ``<name>.png``, ``.jpg`` or
``.webp`` by the image's real signature), through the same rules. The storage knows bytes,
not HTTP: it opens a :class:`Sink` for a name, and whoever writes into it (the download,
in the job's step) commits it or lets it go.

::

    Sink, StoredClip    sink.py   bytes on their way to a name; what a commit gives back
    Storage             base.py   the interface: a sink per clip or still, the manifests
    ├── LocalStorage    local.py  a temp file beside the name, synced and renamed
    │                   files.py  that temp file, and the cleanup of killed writes' ones
    │                   modes.py  the delivered files' permissions (umask or a setting)
    └── S3Storage       s3.py     a streaming multipart upload, committed when complete

:func:`make_storage` picks one from the settings. boto3 is imported only for a bucket, so
the local default works without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from config.errors import SettingsError
from worker.storage.base import Storage
from worker.storage.local import LocalStorage
from worker.storage.sink import Sink, StoredClip

if TYPE_CHECKING:
    # The storage part and the HTTP limits a bucket's client shares with the provider's.
    from config.settings import Settings

__all__ = ["LocalStorage", "Sink", "Storage", "StoredClip", "check_output", "make_storage"]


def make_storage(settings: Settings) -> Storage:
    """The storage ``RELAYDANCE_OUTPUT`` names: a directory, or a bucket and prefix."""
    bucket = settings.output_bucket()
    if bucket is None:
        return LocalStorage(settings.output_dir, mode=settings.file_mode())
    try:
        from worker.storage.s3 import S3Storage
    except ImportError as exc:
        raise SettingsError(
            f"RELAYDANCE_OUTPUT names a bucket, but {exc.name} is not installed: "
            "pip install 'relaydance-worker[s3]'"
        ) from None
    return S3Storage.from_settings(settings)


def check_output(settings: Settings) -> str:
    """Prove the configured output takes writes, before the fleet spends anything.

    Returns what was verified; raises :class:`~worker.errors.StorageError` (the message
    names the problem and the fix) or :class:`~config.settings.SettingsError`.
    """
    storage = make_storage(settings)
    try:
        return storage.check()
    finally:
        storage.close()
