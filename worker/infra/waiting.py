"""One loop that blocks until something is final: read it, report it, stop when it is final
or when the deadline passes.

A job (the producer API's ``wait``) and a batch (``wait_batch``) are followed by this one
loop, so both sleep, report progress and time out the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["wait_until_final"]

T = TypeVar("T")


def wait_until_final(
    read: Callable[[], T],
    is_final: Callable[[T], bool],
    *,
    timeout: float,
    interval: float,
    on_progress: Callable[[T], None] | None = None,
    progress_of: Callable[[T], object] | None = None,
    timeout_message: Callable[[T], str],
) -> T:
    """Call ``read`` every ``interval`` seconds until ``is_final`` holds; return the last value.

    ``on_progress`` is given each value read; with ``progress_of`` only those whose
    ``progress_of(value)`` differs from the last one reported. Raises :class:`TimeoutError`
    with ``timeout_message(last value)`` once ``timeout`` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    unset = object()
    last: object = unset
    while True:
        value = read()
        if on_progress is not None:
            marker = unset if progress_of is None else progress_of(value)
            if marker is unset or marker != last:
                on_progress(value)
                last = marker
        if is_final(value):
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(timeout_message(value))
        time.sleep(min(interval, max(deadline - time.monotonic(), 0.0)))
