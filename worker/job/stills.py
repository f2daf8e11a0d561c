"""Storing a generated still: fetched with a clip's checks, written whole through the
storage's sink, with its manifest beside it.

The image job stands on this: the provider's answer holds the URLs, and each one is
stored here. The download (:func:`worker.provider.image_download.fetch_image`) knows
HTTP and not the storage; the storage (:meth:`worker.storage.Storage.open_image`) knows
bytes and not HTTP; this is where the two meet, as :mod:`worker.job.deliver` does for a
clip.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping

import httpx

from worker.provider.image_download import fetch_image
from worker.provider.urlsafety import redact_url
from worker.storage import Storage, StoredClip

__all__ = ["save_image"]

logger = logging.getLogger(__name__)


def save_image(
    storage: Storage,
    url: str,
    *,
    name: str,
    client: httpx.Client,
    max_bytes: int,
    allow_local: bool,
    overall_timeout: float,
    manifest: Mapping[str, object] | None = None,
) -> StoredClip:
    """Store the still at ``url`` as ``<name>.png`` (``.jpg``, ``.webp``: by its real
    signature), checked, capped, hashed and committed whole; with ``manifest`` given,
    write it as ``<name>.json`` beside the image, with the image's own facts added.

    Raises the download errors of :mod:`worker.provider.image_download` (an image that
    is not PNG, JPEG or WebP is ``DownloadRejected``; nothing is written then), and
    :class:`~worker.errors.StorageError` when the storage will not take it.
    """
    image = fetch_image(url, client=client, max_bytes=max_bytes, allow_local=allow_local,
                        overall_timeout=overall_timeout)  # fmt: skip
    kind = image.format
    with storage.open_image(name, extension=kind.extension, content_type=kind.content_type) as sink:
        sink.write(image.data)
        stored = sink.commit(sha256=image.sha256, seconds=image.seconds)
    stored = dataclasses.replace(stored, width=image.width, height=image.height)
    logger.info("stored image %s as %s: %s %sx%s, %d bytes in %.2f s", redact_url(url),
                stored.uri, kind.name, image.width, image.height, image.size,
                image.seconds)  # fmt: skip
    if manifest is not None:
        storage.save_manifest(name, {**manifest, **stored.manifest_fields()})
    return stored
