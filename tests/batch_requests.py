"""Requests for batch and schedule tests: the cheap model and one-line ways to write a batch.

Shared by the tests that check batch files in-process (tests/unit/) and those that run
batches against Redis and a worker (tests/integration/).
"""

from __future__ import annotations

import json
from typing import Any

FAST = "doubao-seedance-2-0-fast-260128"  # 28 credits/s = $0.14/s: a 5 s clip is $0.70


def req(prompt: str, **extra: Any) -> dict[str, Any]:
    """A valid 5 s request for the cheap model, with ``extra`` fields set."""
    return {"model": FAST, "prompt": prompt, "seconds": 5, **extra}


def jsonl(requests: list[Any]) -> str:
    """A JSONL batch file: each request as a line, strings kept as written (bad lines)."""
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in requests) + "\n"
