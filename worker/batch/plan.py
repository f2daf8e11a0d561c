"""From checked lines to a plan: distinct requests by content, their costs, the batch digest.

A request's fingerprint is :meth:`RenderRequest.fingerprint` (the canonical JSON of the
validated request), extended with the sha256 of each local reference file it names, so a
file edited in place between two batches is not mistaken for the old one. Lines are one
item when both their fingerprint and their key alias match.

Storyboards: an image line's request is an image request, priced per image (an unpriced
image model counts the table's image default). A line with ``refs`` has a fingerprint that
also holds each named line's (its still's), so two clips of one request made from two
different stills stay two items. Items are numbered in a topological order: an image item
before every item that uses its still, a chain's items together where its first line is,
otherwise line order (a file without refs keeps exactly its line order). A chain (items
joined by refs: a still and the clips made from it) is admitted by a budget whole or not
at all: a still whose clip cannot be paid for is not made.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache

from worker.batch.budget import to_micros
from worker.batch.parse import BatchLine, InvalidLine, ParsedBatch
from worker.batch.refs import LineRequest
from worker.batch.storyboard import chain_roots, topological
from worker.errors import InvalidRequest
from worker.render.image_request import ImageRequest
from worker.render.pricing import PriceTable, price_table

__all__ = [
    "BatchPlan", "InvalidBatch", "PlannedItem", "content_fingerprint", "plan_batch",
    "refuse_unsubmittable",
]  # fmt: skip


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


def content_fingerprint(request: LineRequest) -> str:
    """Identical content, identical fingerprint: the request plus its local files' hashes."""
    paths = [] if isinstance(request, ImageRequest) else request.local_paths()
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
    request: LineRequest
    lines: tuple[int, ...]
    alias: str | None = None  # the lines' own key alias; None: the batch's
    refs: tuple[int, ...] = ()  # the items whose stills come first in its images, in order

    @property
    def is_image(self) -> bool:
        """Whether the item makes stills (an image request) rather than a clip."""
        return isinstance(self.request, ImageRequest)


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

    def chains(self) -> list[tuple[int, ...]]:
        """The items joined by refs (a still and the clips made from it), each chain's
        items in order, chains in order; an item without refs is a chain of its own. A
        chain's items are consecutive (see :func:`~worker.batch.storyboard.topological`)."""
        chains: dict[int, list[int]] = {}
        for index, root in chain_roots({i.index: i.refs for i in self.items}).items():
            chains.setdefault(root, []).append(index)
        return [tuple(members) for _, members in sorted(chains.items())]

    def fitting(self, budget_micros: int | None) -> list[PlannedItem]:
        """The items a budget admits: chain by chain, in order, each whole, until the next
        chain would exceed it."""
        if budget_micros is None:
            return list(self.items)
        admitted: list[PlannedItem] = []
        spent = 0
        for chain in self.chains():
            cost = sum(self.items[index].cost_micros for index in chain)
            if spent + cost > budget_micros:
                break
            spent += cost
            admitted += [self.items[index] for index in chain]
        return sorted(admitted, key=lambda item: item.index)

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


def _estimate(table: PriceTable, request: LineRequest) -> int:
    if isinstance(request, ImageRequest):
        return to_micros(table.estimate_image(request))
    return to_micros(table.estimate(request))


def _fingerprint(line: BatchLine, ref_keys: list[tuple[str | None, str]]) -> str:
    """The line's content; with refs, the content of each still it is made from too."""
    own = content_fingerprint(line.request)
    if not ref_keys:
        return own
    body = json.dumps([own, [list(key) for key in ref_keys]], separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def plan_batch(parsed: ParsedBatch, *, prices: PriceTable | None = None) -> BatchPlan:
    """Group lines by content fingerprint, in topological order, and price each request."""
    table = prices or price_table()
    by_line = {ln.line: ln for ln in parsed.lines}
    # The same request on two keys is two renders (two providers, or two tenants).
    by_fp: dict[tuple[str | None, str], int] = {}
    requests: list[tuple[str, LineRequest, list[int], str | None, tuple[int, ...]]] = []
    line_index: dict[int, int] = {}
    line_key: dict[int, tuple[str | None, str]] = {}
    for number in topological({n: ln.ref_lines for n, ln in by_line.items()}):
        line = by_line[number]
        fp = _fingerprint(line, [line_key[ref] for ref in line.ref_lines])
        index = by_fp.get((line.key, fp))
        if index is None:
            index = by_fp[(line.key, fp)] = len(requests)
            refs = tuple(line_index[ref] for ref in line.ref_lines)
            requests.append((fp, line.request, [], line.key, refs))
        requests[index][2].append(number)
        line_index[number], line_key[number] = index, (line.key, fp)
    items = [
        PlannedItem(index, fp, _estimate(table, request), request, tuple(sorted(lines)), alias,
                    refs)
        for index, (fp, request, lines, alias, refs) in enumerate(requests)
    ]  # fmt: skip
    line_items = sorted(line_index.items())
    line_ids = {ln.line: ln.line_id for ln in parsed.lines if ln.line_id is not None}
    return BatchPlan(items, line_items, list(parsed.invalid), parsed.source, line_ids)


def refuse_unsubmittable(parsed: ParsedBatch) -> None:
    """Raise :class:`InvalidBatch` for the batch's refused lines, if any."""
    if parsed.invalid:
        raise InvalidBatch(parsed.invalid)
