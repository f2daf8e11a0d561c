"""The records of batch text: JSON Lines objects or CSV rows, each with its line number.

A line that cannot be read becomes an :class:`Unparsable` record carrying the reason, so
it is reported with the others instead of stopping the batch (see :mod:`worker.batch.parse`).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from worker.errors import InvalidRequest

__all__ = ["BatchFileError", "Unparsable", "csv_records", "jsonl_records"]

_SCALARS = ("model", "prompt", "seconds", "ratio", "resolution", "generate_audio",
            "first_frame", "last_frame", "mode", "upscale", "key", "id", "n", "size",
            "refs")  # fmt: skip
_MEDIA = {"image": ("images", 9), "video": ("videos", 3), "audio": ("audio", 3)}
_LIST_COLUMNS = {"images": "image", "image": "image", "videos": "video", "video": "video",
                 "audio": "audio", "audios": "audio"}  # fmt: skip
_NUMBERED = re.compile(r"^(image|video|audio)(\d+)$")


class BatchFileError(InvalidRequest):
    """A batch file that cannot be read at all (format, encoding, header, size)."""

    code = "invalid_batch_file"


def jsonl_records(text: str) -> Iterable[tuple[int, Any]]:
    """(line number, parsed object or :class:`Unparsable`) for each request line."""
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            yield number, json.loads(stripped)
        except json.JSONDecodeError as exc:
            yield (
                number,
                Unparsable(
                    f"not valid JSON ({exc.msg} at column {exc.colno}); write one JSON object "
                    'per line, e.g. {"model": "...", "prompt": "..."}'
                ),
            )
        except (ValueError, RecursionError):
            # An integer past Python's 4300-digit conversion limit, or nesting past the stack.
            yield (
                number,
                Unparsable(
                    "cannot be read (a number with thousands of digits, or nesting too deep); "
                    "write one flat request object per line"
                ),
            )


@dataclass(frozen=True)
class Unparsable:
    """A line that could not be read, and why (reported as that line's error)."""

    message: str


def _csv_header(header: list[str]) -> list[tuple[str, int]]:
    """Each column's target: (field, 0) for scalars and lists, (kind, n) for numbered."""
    columns: list[tuple[str, int]] = []
    problems: list[tuple[str, str]] = []
    for raw in header:
        name = raw.strip().lower().replace("-", "_").replace(" ", "_")
        numbered = _NUMBERED.match(name)
        if name in _SCALARS and (name, 0) in columns:
            problems.append((f"column {raw!r}", "appears twice; keep one"))
            columns.append(("", 0))
        elif name in _SCALARS:
            columns.append((name, 0))
        elif name in _LIST_COLUMNS:
            columns.append((_LIST_COLUMNS[name], -1))
        elif numbered and 1 <= int(numbered.group(2)) <= _MEDIA[numbered.group(1)][1]:
            columns.append((numbered.group(1), int(numbered.group(2))))
        else:
            known = ", ".join((*_SCALARS, "images", "videos", "audio", "image1..image9"))
            problems.append((f"column {raw!r}", f"unknown column; known columns are: {known}"))
            columns.append(("", 0))
    kinds = {(kind, n < 0) for kind, n in columns if kind in _MEDIA and n != 0}
    for kind in _MEDIA:
        if (kind, True) in kinds and (kind, False) in kinds:
            plural = _MEDIA[kind][0]
            problems.append(
                (plural, f"give either a {plural} column or {kind}1..{kind}N columns, not both")
            )
    if problems:
        raise BatchFileError([(f"line 1: {name}", message) for name, message in problems])
    return columns


def csv_records(text: str) -> Iterable[tuple[int, Any]]:
    """(line number, request mapping or :class:`Unparsable`) for each row after the header."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise BatchFileError([("line 1", f"unreadable CSV header ({exc})")]) from None
    columns = _csv_header(header)
    previous_end = reader.line_num
    while True:
        start = previous_end + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start, Unparsable(f"unreadable CSV row ({exc}); check its quotes")
            return
        previous_end = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(columns):
            yield (
                start,
                Unparsable(
                    f"has {len(row)} cells but the header has {len(columns)} columns; quote "
                    'values that contain commas ("a, b")'
                ),
            )
            continue
        yield start, _csv_row(columns, row)


def _csv_row(columns: list[tuple[str, int]], row: list[str]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    media: dict[str, list[tuple[int, str]]] = {}
    for (name, number), cell in zip(columns, row, strict=False):
        value = cell.strip()
        if not value or not name:
            continue
        if name == "refs":  # other lines' ids, ``;``-separated like the media lists
            data[name] = [part.strip() for part in value.split(";") if part.strip()]
        elif number == 0:
            data[name] = value
        elif number < 0:
            items = [part.strip() for part in value.split(";") if part.strip()]
            media.setdefault(name, []).extend((0, item) for item in items)
        else:
            media.setdefault(name, []).append((number, value))
    for kind, entries in media.items():
        # Numbered columns keep their numbers' order (a gap simply closes up).
        data[_MEDIA[kind][0]] = [value for _, value in sorted(entries, key=lambda e: e[0])]
    return data
