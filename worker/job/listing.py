"""A page of jobs, newest first, with bounded Redis work however many jobs there are.

The jobs page and ``relaydance jobs`` both list through here. Jobs are read through the
creation-time indexes the job store writes (every job, and by alias, model and batch; see
:class:`worker.job.store.JobStore`): a page is one ``ZREVRANK`` (where the last page
ended), one ``ZREVRANGE`` and one pipeline of ``HMGET`` per row. A filter the indexes
cannot answer (the state, a second filter, a prompt search) walks the chosen index in
chunks and stops after :data:`WINDOW` jobs, saying so, with a cursor to go on from there:
never a ``KEYS`` or full ``SCAN``. A job id is looked up directly. Entries whose record
has expired are skipped and dropped from the index. ``since`` stops the walk at the first
job created before it (the index is ordered by creation time).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, cast

import redis

from worker.job.record import JOB_ID
from worker.job.store import JobStore

__all__ = ["CHUNK", "PAGE_SIZE", "WINDOW", "JobFilter", "JobPage", "Row", "list_jobs"]

PAGE_SIZE = 50
CHUNK = 200
WINDOW = 2000  # jobs examined per request when a filter needs reading records
_FIELDS = ("state", "alias", "request", "poll_count", "cost", "actual_cost", "error_code",
           "error_message", "created_at", "updated_at", "remote_task_id", "batch",
           "billing", "kind", "outputs")  # fmt: skip


@dataclass(frozen=True)
class JobFilter:
    """What the list shows: each filter is exact; ``q`` is a job id or words of a prompt."""

    state: str = ""
    batch: str = ""
    alias: str = ""
    model: str = ""
    q: str = ""
    after: str = ""  # the last job id of the previous page
    since: float | None = None  # only jobs created at or after this epoch time

    def index(self) -> tuple[str, str]:
        """The most selective creation-time index that answers one filter exactly."""
        for kind in ("batch", "model", "alias"):
            value = getattr(self, kind)
            if value:
                return kind, value
        return "", ""

    @property
    def needs_records(self) -> bool:
        """Whether rows must be read before they can be kept or dropped."""
        exact = [v for v in (self.batch, self.model, self.alias) if v]
        return bool(self.state or self.q or len(exact) > 1)

    def keeps(self, row: Row) -> bool:
        """Whether a row passes every filter."""
        if self.state and row.state != self.state:
            return False
        checks = ((self.batch, row.batch), (self.alias, row.alias), (self.model, row.model))
        if any(want and want != have for want, have in checks):
            return False
        if self.since is not None and row.created_at < self.since:
            return False
        needle = self.q.strip().lower()
        return not needle or needle in row.id or needle in row.prompt.lower()


@dataclass(frozen=True)
class Row:
    """One line of the list."""

    id: str
    state: str
    alias: str
    model: str
    prompt: str
    seconds: Any
    polls: int
    cost: float | None
    actual_cost: float | None
    error: str | None
    created_at: float
    updated_at: float
    remote_task_id: str | None
    batch: str
    billing: str
    kind: str = "video"
    images: int = 0  # an image job's: how many it asked for
    outputs: int = 0  # an image job's: how many are stored

    @property
    def length(self) -> str:
        """What the job makes, in a few words: a clip's seconds, or its stills."""
        if self.kind != "image":
            return f"{self.seconds}s"
        stored = f", {self.outputs} stored" if self.outputs else ""
        return f"{self.images} still{'' if self.images == 1 else 's'}{stored}"

    @classmethod
    def from_values(cls, job_id: str, values: list[Any]) -> Row:
        """A row from the ``HMGET`` of :data:`_FIELDS`."""
        data = {f: None if v is None else _text(v) for f, v in zip(_FIELDS, values, strict=True)}
        request = json.loads(data["request"] or "{}")
        code, message = data["error_code"], data["error_message"]
        return cls(
            id=job_id,
            state=data["state"] or "?",
            alias=data["alias"] or "",
            model=str(request.get("model", "")),
            prompt=str(request.get("prompt", "")),
            seconds=request.get("seconds"),
            polls=int(data["poll_count"] or 0),
            cost=_float(data["cost"]),
            actual_cost=_float(data["actual_cost"]),
            error=(f"{code}: {message}" if code else message) or None,
            created_at=_float(data["created_at"]) or 0.0,
            updated_at=_float(data["updated_at"]) or 0.0,
            remote_task_id=data["remote_task_id"] or None,
            batch=(data["batch"] or "").partition(":")[0],
            billing=data["billing"] or "none",
            kind=data["kind"] or "video",
            images=int(request.get("n") or 1) if data["kind"] == "image" else 0,
            outputs=len(json.loads(data["outputs"] or "[]")),
        )


@dataclass
class JobPage:
    """The rows of one page, where the next begins, and how much was looked at."""

    rows: list[Row] = field(default_factory=list)
    next_after: str = ""  # empty: nothing older
    examined: int = 0
    window_full: bool = False  # stopped after WINDOW jobs without filling the page
    indexed: int = 0  # entries in the index read (expired records included)


def _float(value: str | None) -> float | None:
    return float(value) if value else None


def list_jobs(
    client: redis.Redis, store: JobStore, wanted: JobFilter, *, page_size: int = PAGE_SIZE
) -> JobPage:
    """One page of jobs matching ``wanted``, newest first (``client``: the store's Redis)."""
    query = wanted.q.strip()
    if JOB_ID.match(query):
        return _by_id(client, store, wanted, query)
    index = store.created_index(*wanted.index())
    start = 0
    if wanted.after:
        rank = client.zrevrank(index, wanted.after)
        if rank is None:
            return JobPage(indexed=int(client.zcard(index)))  # the cursor's job expired
        start = int(str(rank)) + 1
    page = JobPage(indexed=int(client.zcard(index)))
    limit = WINDOW if wanted.needs_records else page_size
    while len(page.rows) < page_size and page.examined < limit:
        size = min(CHUNK, limit - page.examined) if wanted.needs_records else page_size
        entries = cast(
            list[tuple[Any, float]],
            client.zrevrange(index, start, start + size - 1, withscores=True),
        )
        ids = [_text(m) for m, created in entries if _newer(created, wanted.since)]
        start += len(entries)
        _read_chunk(client, store, index, ids, wanted, page, page_size)
        if len(page.rows) >= page_size:
            return page  # filled, maybe mid-chunk: the next page starts after its last row
        if len(entries) < size or len(ids) < len(entries):
            page.next_after = ""  # the index (or the --since window) ends here
            return page
        if not wanted.needs_records:
            break
    if len(page.rows) < page_size and page.examined >= limit:
        page.window_full = True
    return page


def _newer(created: Any, since: float | None) -> bool:
    return since is None or float(created) >= since


def _read_chunk(
    client: redis.Redis, store: JobStore, index: str, ids: list[str], wanted: JobFilter,
    page: JobPage, size: int,
) -> None:  # fmt: skip
    """Read a chunk's records, keep the matching rows, drop index entries that expired."""
    if not ids:
        return
    expired: list[str] = []
    for job_id, values in zip(ids, store.fields_of(ids, list(_FIELDS)), strict=True):
        page.examined += 1
        page.next_after = job_id
        if values[0] is None:
            expired.append(job_id)
            continue
        row = Row.from_values(job_id, values)
        if wanted.keeps(row):
            page.rows.append(row)
            if len(page.rows) >= size:
                break
    if expired:
        client.zrem(index, *expired)


def _by_id(client: redis.Redis, store: JobStore, wanted: JobFilter, job_id: str) -> JobPage:
    (values,) = store.fields_of([job_id], list(_FIELDS))
    page = JobPage(examined=1, indexed=1)
    if values[0] is not None:
        row = Row.from_values(job_id, values)
        if JobFilter(state=wanted.state, batch=wanted.batch, alias=wanted.alias,
                     model=wanted.model).keeps(row):  # fmt: skip
            page.rows.append(row)
    return page


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
