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
one uses the batch's ``--key``. An ``id`` column (or field) is the line's own name for its
shot (``sh010``): the report carries it, and ``--output-name`` may use it; two lines may
not share one.

A line with an image model (``grok-imagine-image``) asks for stills. A video line may take
its first reference images from image lines: ``"refs": ["k1", ...]`` names them by their
``id`` (a ``refs`` column: ``k1;k2``). Each line is checked alone (:mod:`worker.batch.refs`),
then the file's dependencies as a whole (:mod:`worker.batch.storyboard`): a line refused
for its refs carries the same ``line N: refs: ...`` error as any other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from config.settings import Settings, SettingsError, get_settings
from worker.batch.records import BatchFileError, Unparsable, csv_records, jsonl_records
from worker.batch.refs import MAX_ID, LineRequest, clean_id, take_refs, validate_line
from worker.batch.storyboard import check_refs
from worker.errors import InvalidRequest
from worker.render.aliases import alias_problem
from worker.render.image_request import ImageRequest
from worker.render.request import RenderRequest, is_url
from worker.render.validation import validate_request

__all__ = [
    "BatchFileError",
    "BatchLine",
    "InvalidLine",
    "ParsedBatch",
    "parse_records",
    "parse_text",
]

Format = Literal["jsonl", "csv"]
MAX_LINES = 100_000  # a bigger batch is better split; it keeps one batch record small
_PATH_FIELDS = ("images", "videos", "audio", "first_frame", "last_frame")


@dataclass(frozen=True)
class BatchLine:
    """One valid request, the line it came from, and the line's own key alias if it named one.

    ``refs`` are the image lines' ids whose stills come first in the line's images, and
    ``ref_lines`` the lines they name, in the same order (both empty without refs).
    """

    line: int
    request: LineRequest
    key: str | None = None
    line_id: str | None = None  # the line's own ``id``
    refs: tuple[str, ...] = ()
    ref_lines: tuple[int, ...] = ()

    @property
    def is_image(self) -> bool:
        """Whether the line asks for stills (an image model) rather than a clip."""
        return not isinstance(self.request, RenderRequest)

    def record(self) -> dict[str, Any]:
        """The line as a request mapping again (with its ``key``, ``id`` and ``refs``), to
        be parsed later."""
        data = self.request.model_dump(mode="json")
        if self.key is not None:
            data["key"] = self.key
        if self.line_id is not None:
            data["id"] = self.line_id
        if self.refs:
            data["refs"] = list(self.refs)
        return data


@dataclass(frozen=True)
class InvalidLine:
    """One refused line: every problem as (field, message with the fix)."""

    line: int
    problems: list[tuple[str, str]]
    line_id: str | None = None  # the line's own id, when it could be read

    def messages(self) -> list[str]:
        """``line N: field: message`` for each problem."""
        return [f"line {self.line}: {name}: {message}" for name, message in self.problems]

    def to_json(self) -> list[Any]:
        """``[line, problems]``, or with the line's own id ``[line, problems, id]``."""
        return [self.line, self.problems, *([self.line_id] if self.line_id else [])]

    @classmethod
    def from_json(cls, data: list[Any]) -> InvalidLine:
        """The line :meth:`to_json` wrote."""
        problems = [(str(field), str(message)) for field, message in data[1]]
        return cls(int(data[0]), problems, *data[2:3])


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


def _line_id(data: dict[str, Any]) -> tuple[str | None, str | None]:
    """The line's own ``id`` (taken out of ``data``), and a problem with it."""
    value = data.pop("id", None)
    if value is None or value == "":
        return None, None
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None, 'give the line\'s id as text, e.g. "sh010", or leave it out'
    text = clean_id(value)
    if text is None:
        return None, f'give an id of 1 to {MAX_ID} printable characters, e.g. "sh010"'
    return text, None


@dataclass(frozen=True)
class _Checks:
    """How the lines of one batch are checked."""

    base_dir: Path | None
    check_files: bool
    providers: _Providers
    media_dirs: Sequence[Path] | None

    def validate(self, data: Mapping[str, Any], provider: str) -> RenderRequest:
        """A video request checked by ``provider``'s rules."""
        return validate_request(data, provider=provider, check_files=self.check_files,
                                media_dirs=self.media_dirs)  # fmt: skip


def _check_one(line: int, data: Any, checks: _Checks) -> BatchLine | InvalidLine:
    """One line checked; whatever it holds, a failure is that line's error, never the batch's."""
    try:
        return _check_line(line, data, checks)
    except (ValueError, RecursionError, OverflowError) as exc:
        # e.g. an integer too long to convert, or structures nested past the stack
        return InvalidLine(line, [("line", f"cannot be checked ({type(exc).__name__}); "
                                   "write one flat request object per line")])  # fmt: skip


def _check_line(line: int, data: Any, checks: _Checks) -> BatchLine | InvalidLine:
    if isinstance(data, RenderRequest | ImageRequest):
        data = data.model_dump(mode="json")
    alias = line_id = None
    refs: tuple[str, ...] = ()
    if isinstance(data, Mapping):
        data, alias, bad_key = _line_key(data)
        if bad_key:
            return InvalidLine(line, [("key", bad_key)])
        line_id, bad_id = _line_id(data)
        if bad_id:
            return InvalidLine(line, [("id", bad_id)])
        refs, bad_refs = take_refs(data)
        if bad_refs:
            return InvalidLine(line, [("refs", bad_refs)], line_id)
        if checks.base_dir is not None:
            data = _resolve_paths(data, checks.base_dir)
    provider, problem = checks.providers.of(alias)
    if problem is not None:
        return InvalidLine(line, [problem], line_id)
    try:
        request = validate_line(data, refs, provider=provider, validate=checks.validate)
    except InvalidRequest as exc:
        return InvalidLine(line, list(exc.problems), line_id)
    return BatchLine(line, request, alias, line_id, refs)


def _unique_id(checked: BatchLine, ids: dict[str, int]) -> BatchLine | InvalidLine:
    """The line, or its refusal when an earlier line has its id."""
    assert checked.line_id is not None
    first = ids.setdefault(checked.line_id, checked.line)
    if first == checked.line:
        return checked
    return InvalidLine(checked.line, [("id", f"{checked.line_id!r} is line {first}'s id too; "
                                       "give each line its own id")])  # fmt: skip


def parse_records(
    records: Iterable[tuple[int, Any]] | Iterable[Any],
    *,
    base_dir: Path | None = None,
    check_files: bool = True,
    source: str = "<requests>",
    numbered: bool = False,
    key: str = "default",
    media_dirs: Sequence[Path] | None = None,
) -> ParsedBatch:
    """Validate requests (mappings, :class:`RenderRequest` or :class:`ImageRequest`); lines
    count from 1.

    With ``numbered`` the records are ``(line, data)`` pairs that carry their own numbers.
    ``key`` is the batch's alias: the provider of lines that name none. Local files must
    lie inside ``media_dirs`` (default: ``RELAYDANCE_MEDIA_DIRS``).
    """
    valid: list[BatchLine] = []
    invalid: list[InvalidLine] = []
    ids: dict[str, int] = {}  # line id -> the line that has it
    claims: dict[str, list[int]] = {}  # line id -> every line that gave it, refused or not
    checks = _Checks(base_dir, check_files, _Providers(key), media_dirs)
    for index, record in enumerate(records, start=1):
        if index > MAX_LINES:  # refused before the rest is validated
            raise BatchFileError(
                [("file", f"{source} has more than {MAX_LINES} requests; split it into batches")]
            )
        line, data = record if numbered else (index, record)
        checked = _check_one(line, data, checks)
        if checked.line_id is not None:
            claims.setdefault(checked.line_id, []).append(checked.line)
            if isinstance(checked, BatchLine):
                checked = _unique_id(checked, ids)
        if isinstance(checked, BatchLine):
            valid.append(checked)
        else:
            invalid.append(checked)
    if not valid and not invalid:
        raise BatchFileError([("file", f"{source} holds no requests; add one request per line")])
    if any(ln.refs for ln in valid):
        valid, invalid = _resolve(valid, invalid, claims)
    return ParsedBatch(valid, invalid, source)


def _resolve(
    valid: list[BatchLine], invalid: list[InvalidLine], claims: dict[str, list[int]]
) -> tuple[list[BatchLine], list[InvalidLine]]:
    """The file's refs checked as a whole: the lines kept, with the lines their refs name,
    and the refused ones, with those that fail on their refs."""
    refs, problems = check_refs(valid, claims, {bad.line for bad in invalid})
    kept = [replace(ln, ref_lines=refs[ln.line]) for ln in valid if ln.line not in problems]
    refused = [InvalidLine(ln.line, [("refs", message) for message in problems[ln.line]],
                           ln.line_id) for ln in valid if ln.line in problems]  # fmt: skip
    return kept, sorted([*invalid, *refused], key=lambda bad: bad.line)


def parse_text(
    text: str,
    *,
    fmt: Format,
    source: str = "<batch>",
    base_dir: Path | None = None,
    check_files: bool = True,
    key: str = "default",
    media_dirs: Sequence[Path] | None = None,
) -> ParsedBatch:
    """Validate batch text in a given format; lines are numbered as in the text."""
    records = jsonl_records(text) if fmt == "jsonl" else csv_records(text)
    prepared: list[tuple[int, Any]] = []
    parse_errors: list[InvalidLine] = []
    for line, data in records:
        if isinstance(data, Unparsable):
            parse_errors.append(InvalidLine(line, [("line", data.message)]))
        else:
            prepared.append((line, data))
    if not prepared and not parse_errors:
        raise BatchFileError([("file", f"{source} holds no requests; add one request per line")])
    if not prepared:
        return ParsedBatch([], parse_errors, source)
    parsed = parse_records(
        prepared, base_dir=base_dir, check_files=check_files, source=source, numbered=True,
        key=key, media_dirs=media_dirs,
    )  # fmt: skip
    invalid = sorted([*parsed.invalid, *parse_errors], key=lambda bad: bad.line)
    return ParsedBatch(parsed.lines, invalid, source)
