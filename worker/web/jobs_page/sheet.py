"""A batch's contact sheet: its outputs in a grid, each with its line, prompt and state.

One page of :data:`SHEET_PAGE` lines at a time, in line order as ``relaydance batch
report`` lists them (invalid lines included). The batch's settled view
(:meth:`worker.batch.tracker.BatchTracker.view`, what the batch page reads) gives each
line's state; only the page's own jobs are then read, in one round trip, so an open sheet
that refreshes every few seconds costs the same for 50 lines as for 5,000. A finished
line's tile shows what was stored: a clip as a muted video that plays while the pointer
is over it, a still (a ``.png``, ``.jpg`` or ``.webp`` file) as an image; any other line
shows its state (and why it failed or was refused). In a storyboard a clip's tile names
the line of the still it is made from, and the still's the lines of its clips, as links to
their tiles when they are on the same page. Local files go through the page's
media endpoint (and its sign-in), never their paths; a bucket's through presigned URLs,
as the job page's clip does. ``version`` changes when a tile does, so the page's script
reloads the page only then.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from worker.batch.parse import InvalidLine
from worker.batch.status import BatchStatus, ItemView
from worker.batch.store import job_of
from worker.batch.tracker import BatchTracker
from worker.job.engine import Engine
from worker.web.jobs_page.media import MediaKind, stored_media

__all__ = ["SHEET_PAGE", "Sheet", "Tile", "contact_sheet"]

SHEET_PAGE = 48  # tiles per page: a night's batch reviewed a screenful at a time
_EXCERPT = 90

TileKind = MediaKind


@dataclass(frozen=True)
class Tile:
    """One line of the batch as the sheet shows it."""

    line: int
    line_id: str | None
    job_id: str | None
    state: str
    prompt: str  # the full prompt (a tooltip)
    excerpt: str
    kind: TileKind
    src: str | None  # under the page's root, or a presigned bucket URL
    error: str | None = None  # why a line failed or was refused, cut short
    made_from: tuple[int, ...] = ()  # a clip's stills' lines, in order (a storyboard)
    makes: tuple[int, ...] = ()  # a still's clips' lines


@dataclass(frozen=True)
class Sheet:
    """A page of tiles and what the page around them needs."""

    status: BatchStatus
    tiles: list[Tile]
    page: int
    pages: int
    version: str
    media_origin: str  # the bucket's origin, for the page's media and image policy

    @property
    def done(self) -> int:
        """Lines that ended with a stored output."""
        return self.status.done

    @property
    def lines(self) -> frozenset[int]:
        """The lines on this page (a chain's other line is linked when it is one)."""
        return frozenset(tile.line for tile in self.tiles)


_FIELDS = ("output_path", "output_uri", "error_code", "error_message", "request")


def _excerpt(prompt: str) -> str:
    flat = " ".join(prompt.split())
    return flat if len(flat) <= _EXCERPT else flat[: _EXCERPT - 1] + "…"


@dataclass(frozen=True)
class _Line:
    """One line of the page: its number, state, job and what its job record says."""

    line: int
    line_id: str | None
    state: str
    job_id: str | None
    prompt: str
    error: str | None
    output_path: str | None
    output_uri: str | None


def _media(engine: Engine, row: _Line, *, root: str) -> tuple[TileKind, str | None]:
    """What a line's tile shows and where from; ``("none", None)`` while there is nothing."""
    if row.state != "done" or not row.job_id:
        return "none", None
    return stored_media(engine, row.job_id, row.output_path, row.output_uri, root=root)


def _tile(engine: Engine, row: _Line, *, root: str) -> Tile:
    kind, src = _media(engine, row, root=root)
    error = _excerpt(row.error) if row.error and row.state != "done" else None
    return Tile(row.line, row.line_id, row.job_id, row.state, row.prompt, _excerpt(row.prompt),
                kind, src, error)  # fmt: skip


def _invalid(bad: InvalidLine) -> _Line:
    problems = "; ".join(f"{name}: {message}" for name, message in bad.problems)
    return _Line(bad.line, bad.line_id, "invalid", None, "", problems, None, None)


def _lines(engine: Engine, view: ItemView, page: int) -> tuple[list[_Line], int, int]:
    """The lines of page ``page`` (clamped) with their jobs' fields, read in one pipeline;
    the page shown and the number of pages."""
    record = view.record
    entries: list[tuple[int, int | InvalidLine]] = [*record.lines]
    entries += [(bad.line, bad) for bad in record.invalid]
    entries.sort(key=lambda entry: entry[0])
    pages = max(1, math.ceil(len(entries) / SHEET_PAGE))
    page = min(max(page, 1), pages)
    chosen = entries[(page - 1) * SHEET_PAGE : page * SHEET_PAGE]
    jobs = {line: job_of(view.values.get(what, "")) for line, what in chosen
            if isinstance(what, int)}  # fmt: skip
    wanted = [(line, job) for line, job in jobs.items() if job]
    answers = engine.store.fields_of([job for _, job in wanted], list(_FIELDS)) if wanted else []
    found = {line: dict(zip(_FIELDS, row, strict=True))
             for (line, _), row in zip(wanted, answers, strict=True)}  # fmt: skip
    rows = [_invalid(what) if isinstance(what, InvalidLine) else
            _line(view, line, what, jobs.get(line), found.get(line, {}))
            for line, what in chosen]  # fmt: skip
    return rows, page, pages


def _line(view: ItemView, line: int, index: int, job: str | None, fields: dict[str, Any]) -> _Line:
    state = view.states.get(index, "queued")
    request = json.loads(fields.get("request") or "null") or view.items[index].request
    error = None
    if state == "failed":
        code, message = fields.get("error_code"), fields.get("error_message")
        error = f"{code}: {message}" if code and message else (message or code)
    return _Line(line, view.record.line_ids.get(line), state, job, str(request.get("prompt") or ""),
                 error, fields.get("output_path"), fields.get("output_uri"))  # fmt: skip


def _chained(tiles: list[Tile], made_from: dict[int, tuple[int, ...]]) -> list[Tile]:
    """The tiles with a storyboard's chains named: each clip its stills, each still its clips."""
    if not made_from:
        return tiles
    makes: dict[int, list[int]] = {}
    for clip, stills in sorted(made_from.items()):
        for still in stills:
            makes.setdefault(still, []).append(clip)
    return [replace(t, made_from=made_from.get(t.line, ()), makes=tuple(makes.get(t.line, ())))
            for t in tiles]  # fmt: skip


def contact_sheet(engine: Engine, batch_id: str, *, root: str, page: int = 1) -> Sheet:
    """Page ``page`` of the batch's contact sheet; raises ``BatchNotFound``."""
    status, view = BatchTracker(engine).view(batch_id)
    rows, page, pages = _lines(engine, view, page)
    tiles = _chained([_tile(engine, row, root=root) for row in rows], status.made_from)
    seen = ";".join(f"{t.line}:{t.job_id}:{t.state}:{t.kind}" for t in tiles)
    version = hashlib.sha256(seen.encode()).hexdigest()[:16]
    origin = ""
    remote = next((t.src for t in tiles if t.src and "://" in t.src), None)
    if remote:
        parts = urlsplit(remote)
        origin = f"{parts.scheme}://{parts.netloc}"
    return Sheet(status, tiles, page, pages, version, origin)
