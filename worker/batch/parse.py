"""Batch files: JSON Lines or CSV, one render request per line or row, checked as a whole.

Every line is validated before anything is enqueued, and every bad line is reported at
once with its line number (as an editor shows it), the field and the fix. Relative file
paths in a batch file are taken relative to the file's own directory, so a batch file and
its media can move together.

CSV: a header row names the columns (the request fields). Media columns take several
values either ``;``-separated (``images``, ``videos``, ``audio``) or as numbered columns
(``image1``..``image9``, ``video1``..``video3``, ``audio1``..``audio3``); an empty cell
means the field is absent.

A ``key`` column (or field) names the line's key alias, and so its provider: one file can
mix RelayDance and Kinovi lines, each checked by its own provider's rules. A line without
one uses the batch's ``--key``.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from config.settings import Settings, SettingsError, get_settings
from worker.aliases import alias_problem
from worker.errors import InvalidRequest
from worker.request import RenderRequest, is_url, validate_request

__all__ = [
    "BatchFileError",
    "BatchLine",
    "InvalidLine",
    "ParsedBatch",
    "parse_records",
    "parse_text",
    "read_batch_file",
]

Format = Literal["jsonl", "csv"]
MAX_LINES = 100_000  # a bigger batch is better split; it keeps one batch record small
_SCALARS = ("model", "prompt", "seconds", "ratio", "resolution", "generate_audio",
            "first_frame", "last_frame", "mode", "upscale", "key")  # fmt: skip
_MEDIA = {"image": ("images", 9), "video": ("videos", 3), "audio": ("audio", 3)}
_LIST_COLUMNS = {"images": "image", "image": "image", "videos": "video", "video": "video",
                 "audio": "audio", "audios": "audio"}  # fmt: skip
_NUMBERED = re.compile(r"^(image|video|audio)(\d+)$")
_PATH_FIELDS = ("images", "videos", "audio", "first_frame", "last_frame")


class BatchFileError(InvalidRequest):
    """A batch file that cannot be read at all (format, encoding, header, size)."""

    code = "invalid_batch_file"


@dataclass(frozen=True)
class BatchLine:
    """One valid request, the line it came from, and the line's own key alias if it named one."""

    line: int
    request: RenderRequest
    key: str | None = None

    def record(self) -> dict[str, Any]:
        """The line as a request mapping again (with its ``key``), to be parsed later."""
        data = self.request.model_dump(mode="json")
        return {**data, "key": self.key} if self.key is not None else data


@dataclass(frozen=True)
class InvalidLine:
    """One refused line: every problem as (field, message with the fix)."""

    line: int
    problems: list[tuple[str, str]]

    def messages(self) -> list[str]:
        """``line N: field: message`` for each problem."""
        return [f"line {self.line}: {name}: {message}" for name, message in self.problems]


@dataclass(frozen=True)
class ParsedBatch:
    """A whole batch, checked: its valid lines and its refused ones."""

    lines: list[BatchLine]
    invalid: list[InvalidLine] = field(default_factory=list)
    source: str = "<requests>"

    @property
    def ok(self) -> bool:
        """Whether every line is valid."""
        return not self.invalid

    def messages(self) -> list[str]:
        """Every problem of every refused line, in line order."""
        return [message for bad in self.invalid for message in bad.messages()]


def _resolve_paths(data: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    def fix(value: Any) -> Any:
        if isinstance(value, str) and value and not is_url(value):
            path = Path(value).expanduser()
            return str(path if path.is_absolute() else base_dir / path)
        return value

    for name in _PATH_FIELDS:
        value = data.get(name)
        if isinstance(value, list | tuple):
            data[name] = [fix(v) for v in value]
        elif value is not None:
            data[name] = fix(value)
    return data


class _Providers:
    """The provider of each key alias, from the settings read once per batch."""

    def __init__(self, default_key: str) -> None:
        self.default_key = default_key
        self._settings: Settings | None = None

    def _read(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = get_settings()
            except SettingsError as exc:
                raise BatchFileError([("settings", str(exc))]) from None
        return self._settings

    def of(self, alias: str | None) -> tuple[str, tuple[str, str] | None]:
        """(provider, problem): an alias a line names must be configured."""
        settings = self._read()
        problem = None if alias is None else alias_problem(alias, settings.keys())
        if problem:
            return settings.dialect, ("key", f"{problem}; or leave it empty for --key")
        return settings.provider_for(alias or self.default_key), None


def _line_key(data: Mapping[str, Any]) -> tuple[dict[str, Any], str | None, str | None]:
    """The request without its ``key``, the key, and a problem with it."""
    rest = dict(data)
    value = rest.pop("key", None)
    if value is None:
        return rest, None, None
    if not isinstance(value, str) or not value.strip():
        return rest, None, "give a key alias as text, or leave it out for the batch's --key"
    return rest, value.strip(), None


def _check_one(
    line: int, data: Any, *, base_dir: Path | None, check_files: bool, providers: _Providers
) -> BatchLine | InvalidLine:
    if isinstance(data, RenderRequest):
        data = data.model_dump(mode="json")
    alias = None
    if isinstance(data, Mapping):
        data, alias, bad_key = _line_key(data)
        if bad_key:
            return InvalidLine(line, [("key", bad_key)])
        if base_dir is not None:
            data = _resolve_paths(data, base_dir)
    provider, problem = providers.of(alias)
    if problem is not None:
        return InvalidLine(line, [problem])
    try:
        request = validate_request(data, provider=provider, check_files=check_files)
    except InvalidRequest as exc:
        return InvalidLine(line, list(exc.problems))
    return BatchLine(line, request, alias)


def parse_records(
    records: Iterable[tuple[int, Any]] | Iterable[Any],
    *,
    base_dir: Path | None = None,
    check_files: bool = True,
    source: str = "<requests>",
    numbered: bool = False,
    key: str = "default",
) -> ParsedBatch:
    """Validate requests (mappings or :class:`RenderRequest`); lines count from 1.

    With ``numbered`` the records are ``(line, data)`` pairs that carry their own numbers.
    ``key`` is the batch's alias: the provider of lines that name none.
    """
    valid: list[BatchLine] = []
    invalid: list[InvalidLine] = []
    providers = _Providers(key)
    for index, record in enumerate(records, start=1):
        line, data = record if numbered else (index, record)
        checked = _check_one(
            line, data, base_dir=base_dir, check_files=check_files, providers=providers
        )
        if isinstance(checked, BatchLine):
            valid.append(checked)
        else:
            invalid.append(checked)
    if not valid and not invalid:
        raise BatchFileError([("file", f"{source} holds no requests; add one request per line")])
    if len(valid) + len(invalid) > MAX_LINES:
        raise BatchFileError(
            [("file", f"{source} has more than {MAX_LINES} requests; split it into batches")]
        )
    return ParsedBatch(valid, invalid, source)


def _jsonl_records(text: str) -> Iterable[tuple[int, Any]]:
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            yield number, json.loads(stripped)
        except json.JSONDecodeError as exc:
            yield (
                number,
                _Unparsable(
                    f"not valid JSON ({exc.msg} at column {exc.colno}); write one JSON object "
                    'per line, e.g. {"model": "...", "prompt": "..."}'
                ),
            )


@dataclass(frozen=True)
class _Unparsable:
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


def _csv_records(text: str) -> Iterable[tuple[int, Any]]:
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
            yield start, _Unparsable(f"unreadable CSV row ({exc}); check its quotes")
            return
        previous_end = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(columns):
            yield (
                start,
                _Unparsable(
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
        if number == 0:
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


def _detect(path: str, text: str) -> Format:
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return "jsonl" if first.startswith(("{", "#")) else "csv"


def parse_text(
    text: str,
    *,
    fmt: Format,
    source: str = "<batch>",
    base_dir: Path | None = None,
    check_files: bool = True,
    key: str = "default",
) -> ParsedBatch:
    """Validate batch text in a given format; lines are numbered as in the text."""
    records = _jsonl_records(text) if fmt == "jsonl" else _csv_records(text)
    prepared: list[tuple[int, Any]] = []
    parse_errors: list[InvalidLine] = []
    for line, data in records:
        if isinstance(data, _Unparsable):
            parse_errors.append(InvalidLine(line, [("line", data.message)]))
        else:
            prepared.append((line, data))
    if not prepared and not parse_errors:
        raise BatchFileError([("file", f"{source} holds no requests; add one request per line")])
    if not prepared:
        return ParsedBatch([], parse_errors, source)
    parsed = parse_records(
        prepared, base_dir=base_dir, check_files=check_files, source=source, numbered=True,
        key=key,
    )  # fmt: skip
    invalid = sorted([*parsed.invalid, *parse_errors], key=lambda bad: bad.line)
    return ParsedBatch(parsed.lines, invalid, source)


def read_batch_file(
    path: str | Path, *, fmt: Format | None = None, check_files: bool = True, key: str = "default"
) -> ParsedBatch:
    """Read and validate a JSON Lines or CSV batch file (format from its suffix or content).

    ``key`` is the batch's alias: lines without a ``key`` column are checked by its provider.
    """
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8-sig")  # tolerate the BOM spreadsheets write
    except UnicodeDecodeError:
        raise BatchFileError(
            [("file", f"{file.name} is not UTF-8 text; save it as UTF-8")]
        ) from None
    except OSError as exc:
        raise BatchFileError([("file", f"cannot read {file}: {exc.strerror}")]) from None
    return parse_text(
        text,
        fmt=fmt or _detect(str(file), text),
        source=file.name,
        base_dir=file.resolve().parent,
        check_files=check_files,
        key=key,
    )
