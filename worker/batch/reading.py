"""Reading a batch file with caps on its size, its lines' length and their number.

A batch file comes from whoever may submit batches, so it is read as a stream and given
up on as soon as it passes a cap, with an error naming the cap and the fix: a multi-GB
file, one endless line or a million lines never fills memory or keeps a producer busy
validating what will be refused anyway. The caps are far above what a real batch needs
(a request line is well under a kilobyte).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from worker.batch.parse import MAX_LINES, BatchFileError, Format, ParsedBatch, parse_text

__all__ = ["MAX_FILE_BYTES", "MAX_LINE_BYTES", "read_batch_file", "read_capped"]

MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_LINE_BYTES = 64 * 1024


def _refuse(message: str) -> BatchFileError:
    return BatchFileError([("file", message)])


def _stream(fh: BinaryIO, name: str) -> bytes:
    chunks: list[bytes] = []
    total = lines = 0
    number = 0
    while raw := fh.readline(MAX_LINE_BYTES + 1):
        number += 1
        total += len(raw)
        if total > MAX_FILE_BYTES:
            raise _refuse(f"{name} is larger than {MAX_FILE_BYTES} bytes; split it into batches")
        if len(raw) > MAX_LINE_BYTES:
            raise _refuse(
                f"{name} line {number} is longer than {MAX_LINE_BYTES} bytes; a request needs "
                "far less (is it one request per line?)"
            )
        stripped = raw.strip()
        if stripped and not stripped.startswith(b"#"):
            lines += 1
            if lines > MAX_LINES + 1:  # one more for a CSV header
                raise _refuse(f"{name} has more than {MAX_LINES} requests; split it into batches")
        chunks.append(raw)
    return b"".join(chunks)


def read_capped(file: Path) -> str:
    """The text of a batch file, read within the caps; raises :class:`BatchFileError`."""
    try:
        fh = file.open("rb")
    except OSError as exc:
        raise _refuse(f"cannot read {file}: {exc.strerror}") from None
    with fh:
        status = os.fstat(fh.fileno())
        if stat.S_ISREG(status.st_mode) and status.st_size > MAX_FILE_BYTES:
            raise _refuse(
                f"{file.name} is {status.st_size} bytes, more than {MAX_FILE_BYTES}; split it "
                "into batches"
            )
        try:
            data = _stream(fh, file.name)
        except OSError as exc:
            raise _refuse(f"cannot read {file}: {exc.strerror}") from None
    try:
        return data.decode("utf-8-sig")  # tolerate the BOM spreadsheets write
    except UnicodeDecodeError:
        raise _refuse(f"{file.name} is not UTF-8 text; save it as UTF-8") from None


def _detect(path: str, text: str) -> Format:
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return "jsonl" if first.startswith(("{", "#")) else "csv"


def read_batch_file(
    path: str | Path,
    *,
    fmt: Format | None = None,
    check_files: bool = True,
    key: str = "default",
    media_dirs: Sequence[Path] | None = None,
) -> ParsedBatch:
    """Read and validate a JSON Lines or CSV batch file (format from its suffix or content).

    ``key`` is the batch's alias: lines without a ``key`` column are checked by its provider.
    Local files must lie inside ``media_dirs`` (default: ``RELAYDANCE_MEDIA_DIRS``).
    """
    file = Path(path).expanduser()
    text = read_capped(file)
    return parse_text(
        text,
        fmt=fmt or _detect(str(file), text),
        source=file.name,
        base_dir=file.resolve().parent,
        check_files=check_files,
        key=key,
        media_dirs=media_dirs,
    )
