"""Names for a batch's clips: ``--output-name "{batch}/{line:04d}-{slug}"``.

Without a template a clip is ``<job id>.mp4``, as for any job. A template names each clip
(and its manifest) under the output directory or bucket prefix from its line:

    {batch}     the batch's name, else its id        {batch_id}  the batch's id
    {line}      the line number (e.g. {line:04d})    {id}        the line's own ``id``
    {slug}      the prompt, as lowercase-words-joined-by-dashes (at most 40 characters)
    {model}     the model id     {seconds}  the clip's length     {key}  the key alias
    {date}      the batch's creation date (UTC, YYYY-MM-DD)       {job}  the job id

Everything is checked before anything is enqueued: the template (known fields only, no
attribute or index access, one of ``{batch}``, ``{batch_id}`` or ``{job}`` so that two
batches never write the same file) and every name it gives (relative, no ``..`` or
hidden parts, no NUL, control or reserved characters, within the length S3 keys allow),
and no two distinct requests may share a name (compared without case, as macOS and
Windows volumes do). Lines that repeat a request share its job, and so its name: the
first line's.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

from worker.batch.plan import BatchPlan
from worker.batch.store import BatchRecord, Item
from worker.errors import InvalidRequest

__all__ = [
    "FIELDS",
    "NameFields",
    "check_names",
    "check_plan_names",
    "check_template",
    "job_name",
    "name_problem",
    "render_name",
    "retake_name",
    "slug",
]

FIELDS = ("batch", "batch_id", "line", "id", "slug", "model", "seconds", "key", "date", "job")
_UNIQUE_PER_BATCH = ("batch", "batch_id", "job")
_RESERVED = set('\\:*?"<>|#%{}^[]`')
MAX_SEGMENT = 200  # bytes; file systems allow 255, and ".mp4.part" and a random tag are added
MAX_NAME = 900  # bytes; an S3 key may have 1024, and the prefix comes first
_SLUG_MAX = 40
_OPTION = "output_name"


def slug(text: str) -> str:
    """``"A paper boat, in the RAIN!"`` -> ``"a-paper-boat-in-the-rain"`` (``clip`` if empty)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    words = re.findall(r"[a-z0-9]+", ascii_text.lower())
    out = ""
    for word in words:
        candidate = f"{out}-{word}" if out else word
        if len(candidate) > _SLUG_MAX:
            break
        out = candidate
    return out or (words[0][:_SLUG_MAX] if words else "clip")


@dataclass(frozen=True)
class NameFields:
    """What a template may name, for one distinct request of a batch."""

    batch: str
    batch_id: str
    line: int
    id: str | None
    request: Mapping[str, Any]
    key: str
    created_at: float
    job: str

    def values(self) -> dict[str, Any]:
        """The template's fields."""
        return {
            "batch": self.batch, "batch_id": self.batch_id, "line": self.line,
            "id": self.id or "", "slug": slug(str(self.request.get("prompt") or "")),
            "model": str(self.request.get("model", "")), "seconds": self.request.get("seconds"),
            "key": self.key, "job": self.job,
            "date": datetime.fromtimestamp(self.created_at, UTC).strftime("%Y-%m-%d"),
        }  # fmt: skip


def check_template(template: str) -> list[str]:
    """The fields a template uses; raises :class:`InvalidRequest` naming what is wrong."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        _refuse(f"{template!r} is not a template ({exc}); write e.g. '{{batch}}/{{line:04d}}'")
    used: list[str] = []
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in FIELDS:
            _refuse(f"{{{field}}} is not a field; use {', '.join('{' + f + '}' for f in FIELDS)}")
        if conversion or (spec and "{" in spec):
            _refuse(f"{{{field}}}: give a plain field or a format like {{line:04d}}")
        used.append(field)
    if not any(field in _UNIQUE_PER_BATCH for field in used):
        _refuse(
            f"{template!r} would let two batches write the same file; include {{batch}}, "
            "{batch_id} or {job}, e.g. '{batch}/{line:04d}-{slug}'"
        )
    return used


def render_name(template: str, fields: NameFields) -> str:
    """The name ``template`` gives one request (``.mp4`` and ``.json`` are added)."""
    try:
        return template.format(**fields.values())
    except (ValueError, TypeError) as exc:  # e.g. {slug:04d}
        _refuse(f"{template!r} cannot be filled in ({exc}); check each field's format")


def name_problem(name: str) -> str | None:
    """Why ``name`` may not name a clip under the output directory or prefix, or None."""
    if not name:
        return "is empty"
    if name.startswith("/"):
        return f"{name!r} is absolute; names are relative to the output directory or prefix"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return f"{name!r} holds a NUL or control character"
    bad = sorted({c for c in name if c in _RESERVED})
    if bad:
        return f"{name!r} holds {' '.join(bad)}, which file systems or S3 keys reserve"
    for part in name.split("/"):
        if part in ("", ".", ".."):
            return f"{name!r} has an empty, '.' or '..' part"
        if part.startswith(".") or part != part.strip() or part.endswith("."):
            return f"{name!r} has a part that is hidden or starts or ends with a space or dot"
        if len(part.encode()) > MAX_SEGMENT:
            return f"{name!r} has a part longer than {MAX_SEGMENT} bytes"
    if len(name.encode()) > MAX_NAME:
        return f"{name!r} is longer than {MAX_NAME} bytes"
    return None


def check_names(named: Iterable[tuple[int, str]]) -> None:
    """Refuse bad names and collisions; ``named`` is (first line, name) per distinct request."""
    problems: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for line, name in named:
        problem = name_problem(name)
        if problem:
            problems.append((f"line {line}: {_OPTION}", f"{problem}; change --output-name "
                             "or the line's fields"))  # fmt: skip
            continue
        earlier = seen.setdefault(name.casefold(), line)
        if earlier != line:
            problems.append((f"line {line}: {_OPTION}", f"{name!r} is line {earlier}'s name "
                             "too; add {line} or {id} to --output-name"))  # fmt: skip
    if problems:
        raise InvalidRequest(problems)


def check_plan_names(
    template: str, plan: BatchPlan, *, batch: str | None, key: str, now: float
) -> None:
    """Every name a batch about to be created would give, checked (see :func:`check_names`).

    The batch and job ids do not exist yet: stand-ins of the same form take their place.
    """
    check_template(template)
    first = _first_lines(plan.line_items)
    stand_in = "rdb_" + "0" * 32
    named = []
    for item in plan.items:
        line = first[item.index]
        fields = NameFields(
            batch=batch or stand_in, batch_id=stand_in, line=line, id=plan.line_ids.get(line),
            request=item.request.model_dump(mode="json"), key=item.alias or key,
            created_at=now, job=f"rdj_{item.index:032x}",
        )  # fmt: skip
        named.append((line, render_name(template, fields)))
    try:
        check_names(named)
    except InvalidRequest as exc:  # say what the stand-ins stand for
        raise InvalidRequest(
            [(field, message.replace(stand_in, "<batch id>")) for field, message in exc.problems]
        ) from None


def job_name(record: BatchRecord, item: Item, job_id: str) -> str | None:
    """The name of the clip of ``item``'s job, by the batch's template (None: none)."""
    if record.output_template is None:
        return None
    line = _first_lines(record.lines)[item.index]
    fields = NameFields(
        batch=record.name or record.id, batch_id=record.id, line=line,
        id=record.line_ids.get(line), request=item.request, key=item.alias or record.alias,
        created_at=record.created_at, job=job_id,
    )  # fmt: skip
    return render_name(record.output_template, fields)


def _first_lines(lines: Iterable[tuple[int, int]]) -> dict[int, int]:
    first: dict[int, int] = {}
    for line, index in lines:
        first.setdefault(index, line)
    return first


def retake_name(name: str, take: int) -> str:
    """The name of a retake of a clip named ``name``: ``<name>-take<take>``."""
    return f"{name}-take{take}"


def _refuse(message: str) -> NoReturn:
    raise InvalidRequest([(_OPTION, message)])
