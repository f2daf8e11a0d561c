"""What the simulator's tests send: a key, the submit route, a valid body and ways to vary it.

Shared by the in-process tests (tests/unit/) and the real-process ones (tests/integration/),
so both speak to the simulator with the same request.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

KEY = "sk-test-key-0001"
SUBMIT = "/v1/video/generations"

BASIC: dict[str, Any] = {
    "model": "doubao-seedance-2-0-720p",
    "prompt": "a red kite over a beach",
    "seconds": "5",
    "metadata": {"ratio": "16:9", "resolution": "720p"},
}


def with_changes(**changes: Any) -> dict[str, Any]:
    """BASIC with ``a__b=value`` set at that path, or removed where the value is ``...``."""
    body: dict[str, Any] = copy.deepcopy(BASIC)
    for dotted, value in changes.items():
        target = body
        *parents, last = dotted.split("__")
        for name in parents:
            target = target.setdefault(name, {})
        if value is ...:
            target.pop(last, None)
        else:
            target[last] = value
    return body


def fp(key: str) -> str:
    """The key's fingerprint, as the simulator shows it in stats and debug views."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]
