"""From checked lines to a plan: distinct requests by content, their costs, the batch digest.

A request's fingerprint is :meth:`RenderRequest.fingerprint` (the canonical JSON of the
validated request), extended with the sha256 of each local reference file it names, so a
file edited in place between two batches is not mistaken for the old one. Lines are one
item when both their fingerprint and their key alias match.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache

from worker.batch.budget import to_micros
from worker.batch.parse import InvalidLine, ParsedBatch
from worker.errors import InvalidRequest
from worker.render.pricing import PriceTable, price_table
from worker.render.request import RenderRequest

__all__ = ["BatchPlan", "InvalidBatch", "PlannedItem", "content_fingerprint", "plan_batch"]


class InvalidBatch(InvalidRequest):
    """A batch with refused lines; nothing of it was enqueued. ``lines`` holds each one."""

    code = "invalid_batch"

    def __init__(self, lines: list[InvalidLine]) -> None:
        self.lines = lines
        super().__init__(
            [(f"line {bad.line}: {name}", msg) for bad in lines for name, msg in bad.problems]
        )


@lru_cache(maxsize=4096)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def content_fingerprint(request: RenderRequest) -> str:
    """Identical content, identical fingerprint: the request plus its local files' hashes."""
    paths = request.local_paths()
    if not paths:
        return request.fingerprint()
    digest = hashlib.sha256(request.fingerprint().encode())
    for path in paths:
        try:
            stat = os.stat(path)
            digest.update(_file_digest(path, stat.st_size, stat.st_mtime_ns).encode())
        except OSError:
            # Not readable here (e.g. a schedule running on another host): the path stands
            # for the content; the upload step reports a missing file on its own.
            digest.update(path.encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class PlannedItem:
    """One distinct request, the lines that asked for it, and its estimated cost."""

    index: int
    fingerprint: str
    cost_micros: int
    request: RenderRequest
    lines: tuple[int, ...]
    alias: str | None = None  # the lines' own key alias; None: the batch's


@dataclass(frozen=True)
class BatchPlan:
    """What a batch would submit, in line order."""

    items: list[PlannedItem]
    line_items: list[tuple[int, int]]
    invalid: list[InvalidLine]
    source: str
    line_ids: dict[int, str] = field(default_factory=dict)  # line -> the line's own id

    @property
    def total_micros(self) -> int:
        """Estimated cost of every distinct request, in micro-dollars."""
        return sum(item.cost_micros for item in self.items)

    @property
    def duplicates(self) -> int:
        """Lines that repeat an earlier line's request (they share its job)."""
        return len(self.line_items) - len(self.items)

    def fitting(self, budget_micros: int | None) -> list[PlannedItem]:
        """The items a budget admits: in order, until the next would exceed it."""
        if budget_micros is None:
            return list(self.items)
        admitted: list[PlannedItem] = []
        spent = 0
        for item in self.items:
            if spent + item.cost_micros > budget_micros:
                break
            spent += item.cost_micros
            admitted.append(item)
        return admitted

    def digest(self, alias: str) -> str:
        """A hash of the batch's content: the same file with the same key gives the same."""
        # A line's own key joins its entry; lines without one keep the original form.
        fps = {
            item.index: [item.fingerprint] + ([item.alias] if item.alias is not None else [])
            for item in self.items
        }
        body: dict[str, object] = {
            "alias": alias,
            "lines": [[line, *fps[index]] for line, index in self.line_items],
            "invalid": [bad.line for bad in self.invalid],
        }
        if self.line_ids:  # only then: earlier batches keep their digests
            body["ids"] = sorted(self.line_ids.items())
        return hashlib.sha256(json.dumps(body, separators=(",", ":")).encode()).hexdigest()


def plan_batch(parsed: ParsedBatch, *, prices: PriceTable | None = None) -> BatchPlan:
    """Group lines by content fingerprint and price each distinct request."""
    table = prices or price_table()
    # The same request on two keys is two renders (two providers, or two tenants).
    by_fp: dict[tuple[str | None, str], int] = {}
    requests: list[tuple[str, RenderRequest, list[int], str | None]] = []
    line_items: list[tuple[int, int]] = []
    for line in sorted(parsed.lines, key=lambda ln: ln.line):
        fp = content_fingerprint(line.request)
        index = by_fp.get((line.key, fp))
        if index is None:
            index = by_fp[(line.key, fp)] = len(requests)
            requests.append((fp, line.request, [], line.key))
        requests[index][2].append(line.line)
        line_items.append((line.line, index))
    items = [
        PlannedItem(index, fp, to_micros(table.estimate(request)), request, tuple(lines), alias)
        for index, (fp, request, lines, alias) in enumerate(requests)
    ]
    line_ids = {ln.line: ln.line_id for ln in parsed.lines if ln.line_id is not None}
    return BatchPlan(items, line_items, list(parsed.invalid), parsed.source, line_ids)
