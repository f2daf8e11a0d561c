"""A batch's contact sheet: its outputs in a grid, each with its line, prompt and state.

Built from the batch report (:func:`worker.batch.report.batch_report`, the rows ``relaydance
batch report`` prints), a page of :data:`SHEET_PAGE` lines at a time. A finished line's
tile shows what was stored: a clip as a muted video that plays while the pointer is over
it, a still (a ``.png``, ``.jpg`` or ``.webp`` file) as an image; any other line shows its
state. Local files go through the page's media endpoint (and its sign-in), never their
paths; a bucket's through presigned URLs, as the job page's clip does. ``version`` changes
when a tile's state does, so the page's script reloads it only then.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from worker.batch.report import ReportRow, batch_report
from worker.batch.status import BatchStatus
from worker.batch.tracker import BatchTracker
from worker.errors import StorageError
from worker.job.engine import Engine
from worker.web.jobs_page.media import IMAGE_SUFFIXES, clip_path, output_suffix

__all__ = ["SHEET_PAGE", "Sheet", "Tile", "contact_sheet"]

SHEET_PAGE = 48  # tiles per page: a night's batch reviewed a screenful at a time
_EXCERPT = 90

TileKind = Literal["video", "image", "none"]


@dataclass(frozen=True)
class Tile:
    """One line of the batch as the sheet shows it."""

    line: int
    line_id: str | None
    job_id: str | None
    state: str
    model: str | None
    prompt: str  # the full prompt (a tooltip)
    excerpt: str
    kind: TileKind
    src: str | None  # under the page's root, or a presigned bucket URL
    error: str | None = None  # why a line failed or was refused, cut short


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


def _excerpt(prompt: str) -> str:
    flat = " ".join(prompt.split())
    return flat if len(flat) <= _EXCERPT else flat[: _EXCERPT - 1] + "…"


def _media(engine: Engine, row: ReportRow, *, root: str) -> tuple[TileKind, str | None]:
    """What a line's tile shows and where from; ``("none", None)`` while there is nothing."""
    if row.state != "done" or not row.job_id:
        return "none", None
    src: str | None = None
    if engine.settings.output_bucket() is not None:
        suffix = output_suffix(row.output_uri)
        try:
            src = engine.storage.presigned_url(row.output_uri) if row.output_uri else None
        except StorageError:
            src = None
    else:
        suffix = output_suffix(row.output_path)
        found = clip_path(engine.settings.output_dir, row.job_id, suffix=suffix,
                          recorded=row.output_path)  # fmt: skip
        src = f"{root}/media/{row.job_id}{suffix}" if found is not None else None
    if src is None:
        return "none", None
    return ("image" if suffix in IMAGE_SUFFIXES else "video"), src


def _tile(engine: Engine, row: ReportRow, *, root: str) -> Tile:
    kind, src = _media(engine, row, root=root)
    prompt = row.prompt or ""
    error = _excerpt(row.error) if row.error and row.state != "done" else None
    return Tile(row.line, row.id, row.job_id, row.state, row.model, prompt, _excerpt(prompt),
                kind, src, error)  # fmt: skip


def contact_sheet(engine: Engine, batch_id: str, *, root: str, page: int = 1) -> Sheet:
    """Page ``page`` of the batch's contact sheet; raises ``BatchNotFound``."""
    status, rows = batch_report(BatchTracker(engine), batch_id)
    pages = max(1, math.ceil(len(rows) / SHEET_PAGE))
    page = min(max(page, 1), pages)
    chosen = rows[(page - 1) * SHEET_PAGE : page * SHEET_PAGE]
    tiles = [_tile(engine, row, root=root) for row in chosen]
    seen = ";".join(f"{t.line}:{t.job_id}:{t.state}:{t.kind}" for t in tiles)
    version = hashlib.sha256(seen.encode()).hexdigest()[:16]
    origin = ""
    remote = next((t.src for t in tiles if t.src and "://" in t.src), None)
    if remote:
        parts = urlsplit(remote)
        origin = f"{parts.scheme}://{parts.netloc}"
    return Sheet(status, tiles, page, pages, version, origin)
