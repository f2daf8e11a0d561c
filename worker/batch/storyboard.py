"""A batch file's dependencies as a whole: what each line's ``refs`` name, and an order.

Each line was checked on its own (:mod:`worker.batch.refs`). Here, before anything is
enqueued, every ref must name exactly one line of the file, that line must be valid, make
one still (an image line with ``n`` 1) and not wait, through its own refs, on the line
that names it. A line that fails gets a ``refs`` error naming the ref and the fix; a line
whose ref names a refused line is refused too (its still would never come), so the valid
lines of a file always form a complete, acyclic storyboard.

:func:`topological` orders lines so that each image line comes before the lines that use
it and a chain's lines stay together (so a budget can take a chain whole in one pass),
otherwise keeping line order.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from worker.render.image_request import ImageRequest

__all__ = ["Claims", "Refs", "chain_roots", "check_refs", "topological"]

Claims = Mapping[str, Sequence[int]]  # a line id -> every line that gave it, in order
Refs = dict[int, tuple[int, ...]]  # a line -> the lines its refs name, in order


class BatchLine(Protocol):
    """What this module reads of a checked line (:class:`worker.batch.parse.BatchLine`)."""

    @property
    def line(self) -> int: ...

    @property
    def refs(self) -> tuple[str, ...]: ...

    @property
    def request(self) -> object: ...


def check_refs(
    valid: Sequence[BatchLine], claims: Claims, refused: set[int]
) -> tuple[Refs, dict[int, list[str]]]:
    """The lines each valid line's refs name, and every ``refs`` problem of each line that
    fails on its refs.

    A refused line never leaves a valid one waiting: a ref to a refused line is itself
    refused, and only image lines can be named, which take no refs of their own (each line's
    check), so no line refused here is one that another valid line names.
    """
    by_line = {ln.line: ln for ln in valid}
    targets, problems = _targets(valid, claims, refused)
    cycles = _cycles(targets)
    for number, messages in cycles.items():
        problems.setdefault(number, []).extend(messages)
    for number, message in _non_images(targets, by_line, set(cycles)):
        problems.setdefault(number, []).append(message)
    return targets, problems


def _targets(
    valid: Iterable[BatchLine], claims: Claims, refused: set[int]
) -> tuple[Refs, dict[int, list[str]]]:
    """Each line's named lines, and the refs that name no line, two, or a refused one."""
    targets: Refs = {}
    problems: dict[int, list[str]] = {}
    for ln in valid:
        found: list[int] = []
        for ref in ln.refs:
            lines = claims.get(ref, ())
            if not lines:
                problems.setdefault(ln.line, []).append(
                    f"{ref!r} is no line's id; give the id of an image line in this file"
                )
            elif len(lines) > 1:
                problems.setdefault(ln.line, []).append(
                    f"{ref!r} is the id of lines {', '.join(map(str, lines))}; give each line "
                    "its own id")  # fmt: skip
            elif lines[0] in refused:
                problems.setdefault(ln.line, []).append(
                    f"{ref!r} is line {lines[0]}, which is refused; fix line {lines[0]} first"
                )
            else:
                found.append(lines[0])
        targets[ln.line] = tuple(found)
    return targets, problems


def _cycles(targets: Mapping[int, tuple[int, ...]]) -> dict[int, list[str]]:
    """A problem for each line on a cycle of refs, naming the cycle."""
    state: dict[int, int] = {}  # 1: on the current path, 2: done
    problems: dict[int, list[str]] = {}
    for start in sorted(targets):
        if state.get(start):
            continue
        path, stack = [start], [iter(targets.get(start, ()))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                loop = path[path.index(nxt) :]
                shown = " -> ".join(f"line {n}" for n in [*loop, nxt])
                for number in loop:
                    problems.setdefault(number, []).append(
                        f"its refs wait on themselves ({shown}); a line cannot wait for its "
                        "own output: remove one ref of the cycle")  # fmt: skip
            elif not state.get(nxt) and nxt in targets:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(targets[nxt]))
    return problems


def _non_images(
    targets: Mapping[int, tuple[int, ...]], by_line: Mapping[int, BatchLine], cycles: set[int]
) -> Iterable[tuple[int, str]]:
    """Refs that name a video line, or an image line making more than one still (a line on
    a cycle is told of its cycle instead)."""
    for number, named in targets.items():
        for target in () if number in cycles else named:
            request = by_line[target].request
            if not isinstance(request, ImageRequest):
                message = (
                    f"line {target} is a video line; refs name image lines (an image "
                    "model such as grok-imagine-image): give an image line's id"
                )
                yield number, message
            elif request.n != 1:
                message = (
                    f"line {target} makes {request.n} images and a ref takes one; "
                    "set its n to 1, or split it into lines of one image each"
                )
                yield number, message


def chain_roots(refs: Mapping[int, Iterable[int]]) -> dict[int, int]:
    """Each key of ``refs`` (a node -> the nodes it names) -> the smallest node of its chain,
    the nodes joined by refs either way (a still and every clip made from it)."""
    root = {n: n for n in refs}

    def find(node: int) -> int:
        while root[node] != node:
            root[node] = root[root[node]]
            node = root[node]
        return node

    for number, named in refs.items():
        for target in named:
            if target in root:
                low, high = sorted((find(number), find(target)))
                root[high] = low
    return {n: find(n) for n in refs}


def topological(refs: Mapping[int, Iterable[int]]) -> list[int]:
    """Every key of ``refs`` (a line -> the lines it names) in a topological order: each
    line after the lines it names, each chain's lines together (a chain where its first
    line is), otherwise ascending. Raises :class:`ValueError` on a cycle."""
    chain = chain_roots(refs)
    waiting = {n: 0 for n in refs}
    users: dict[int, list[int]] = {}
    for number, named in refs.items():
        for target in named:
            if target in waiting:
                waiting[number] += 1
                users.setdefault(target, []).append(number)
    ready = [(chain[n], n) for n, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    ordered: list[int] = []
    while ready:
        _, number = heapq.heappop(ready)
        ordered.append(number)
        for user in users.get(number, ()):
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(ready, (chain[user], user))
    if len(ordered) != len(waiting):
        raise ValueError("refs form a cycle; check_refs refuses such lines first")
    return ordered
