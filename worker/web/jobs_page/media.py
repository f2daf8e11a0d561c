"""A job's clip (or still) and manifest for the page: found safely, served in byte ranges.

A job's files are where its record says (``output_path``: ``<output dir>/<job id>.mp4``,
or the path its batch's ``--output-name`` gave it), with the manifest beside the clip. A
file is served only for a job id of the exact form the store makes (``rdj_`` and 32 hex
digits), and only when its resolved path (symlinks followed) still lies inside the
resolved output directory: no ``..``, encoded dots, absolute path, NUL or link can name
another file, whatever a record holds. Browsers seek in a video with ``Range`` requests,
so single ranges are answered ``206`` with ``Content-Range``. A job's stored file is a
clip (``.mp4``) or a still (``.png``, ``.jpg``, ``.webp``), told by its recorded name.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Literal

from worker.errors import StorageError
from worker.job.engine import Engine
from worker.job.record import JOB_ID
from worker.web.jobs_page.http import UiResponse, security_headers, text_response

__all__ = ["IMAGE_SUFFIXES", "JOB_ID", "MEDIA_TYPES", "MediaKind", "clip_path", "output_suffix",
           "parse_range", "serve_file", "stored_media"]  # fmt: skip

# What the page serves of a job's files, by suffix: the clip or still, and its manifest.
MEDIA_TYPES = {".mp4": "video/mp4", ".json": "application/json", ".png": "image/png",
               ".jpg": "image/jpeg", ".webp": "image/webp"}  # fmt: skip
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".webp"})
_CHUNK = 64 * 1024
_SPEC = re.compile(r"[0-9]+-[0-9]*|-[0-9]+")  # first-last, first-, -suffix (ASCII digits)
_MAX_DIGITS = 18


def clip_path(
    output_dir: Path, job_id: str, *, suffix: str = ".mp4", recorded: str | None = None
) -> Path | None:
    """The job's file (``suffix``: ``.mp4`` or ``.json``) in the output directory, or None
    when the id or the path is unsafe or the file does not exist.

    ``recorded`` is the record's ``output_path`` (a named clip); without it the file is
    ``<output dir>/<job id><suffix>``.
    """
    if not JOB_ID.fullmatch(job_id):
        return None
    try:
        base = output_dir.resolve(strict=True)
        wanted = Path(recorded).with_suffix(suffix) if recorded else base / f"{job_id}{suffix}"
        path = wanted.resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        return None
    if base not in path.parents or not path.is_file():
        return None
    return path


def output_suffix(output: str | None) -> str:
    """The suffix of a job's stored file: a still's (``.png``, ``.jpg``, ``.webp``) when
    its recorded path or URI names one, else ``.mp4``."""
    suffix = PurePosixPath(output or "").suffix.lower()
    return suffix if suffix in IMAGE_SUFFIXES else ".mp4"


MediaKind = Literal["video", "image", "none"]


def stored_media(
    engine: Engine, job_id: str, output_path: str | None, output_uri: str | None, *, root: str
) -> tuple[MediaKind, str | None]:
    """What a finished job stored and where the page shows it from: a local file through the
    page's media route, a bucket's through a presigned URL; ``("none", None)`` when it is
    not there. Never the provider's URL of it."""
    src: str | None = None
    if engine.settings.output_bucket() is not None:
        suffix = output_suffix(output_uri)
        try:
            src = engine.storage.presigned_url(output_uri) if output_uri else None
        except StorageError:
            src = None
    else:
        suffix = output_suffix(output_path)
        found = clip_path(engine.settings.output_dir, job_id, suffix=suffix, recorded=output_path)
        src = f"{root}/media/{job_id}{suffix}" if found is not None else None
    if src is None:
        return "none", None
    return ("image" if suffix in IMAGE_SUFFIXES else "video"), src


def _number(digits: str) -> int:
    # More digits than any file size needs: read as "beyond the end" instead of asking
    # int() to convert thousands of digits (which it refuses past 4,300).
    return int(digits) if len(digits) <= _MAX_DIGITS else 10**_MAX_DIGITS


def parse_range(header: str, size: int) -> tuple[int, int] | str | None:
    """The inclusive (first, last) byte of a single ``Range``; None for the whole file
    (no header, or several ranges, which this server answers whole); ``"unsatisfiable"``
    for a range past the end and for any header that does not parse (answered 416)."""
    if not header:
        return None
    unit, equals, spec = header.replace(" ", "").replace("\t", "").partition("=")
    parts = spec.split(",")
    if unit.lower() != "bytes" or not equals or not all(_SPEC.fullmatch(p) for p in parts):
        return "unsatisfiable"
    if len(parts) > 1:
        return None
    first_text, _, last_text = parts[0].partition("-")
    if not first_text:  # a suffix: the last N bytes
        length = _number(last_text)
        if length == 0 or size == 0:
            return "unsatisfiable"
        return max(size - length, 0), size - 1
    first = _number(first_text)
    last = min(_number(last_text), size - 1) if last_text else size - 1
    if first >= size or first > last:
        return "unsatisfiable"
    return first, last


def _chunks(path: Path, first: int, length: int) -> Iterator[bytes]:
    with path.open("rb") as handle:
        handle.seek(first)
        left = length
        while left > 0:
            data = handle.read(min(_CHUNK, left))
            if not data:
                return
            left -= len(data)
            yield data


def serve_file(
    path: Path, *, range_header: str, head: bool = False, content_type: str = "video/mp4"
) -> UiResponse:
    """The file, whole (200) or the asked range (206), streamed in chunks."""
    size = path.stat().st_size
    wanted = parse_range(range_header, size)
    if wanted == "unsatisfiable":
        response = text_response("requested range not satisfiable\n", 416)
        response.headers.append(("Content-Range", f"bytes */{size}"))
        return response
    headers = [("Content-Type", content_type), ("Accept-Ranges", "bytes"), *security_headers()]
    status, first, last = 200, 0, size - 1
    if isinstance(wanted, tuple):
        status, (first, last) = 206, wanted
        headers.append(("Content-Range", f"bytes {first}-{last}/{size}"))
    length = max(last - first + 1, 0)
    headers.append(("Content-Length", str(length)))
    body = b"" if head or length == 0 else _chunks(path, first, length)
    return UiResponse(status, headers, body)
