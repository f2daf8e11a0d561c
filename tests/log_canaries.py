"""What the logging tests plant in a log line: canary secrets and where each may leak, and a root logger of their own."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

CANARY_KEY = "canary-key-3f9c2a7b1e"  # deliberately not sk-shaped: only settings know it
CANARY_SECRET = "canary-webhook-secret-81d0-4mM2E2wRizg4ZDlfzzx_aK3llL7C-i-B"
TOKEN = "ab" * 32
JOB = "rdj_" + "0123456789abcdef" * 2


# (what leaks, the text around it, what must survive)
LEAKS = {
    "configured key": (CANARY_KEY, f"using key {CANARY_KEY} for tenant-a", "tenant-a"),
    "sk key": ("sk-live-5e8d3c2b1a09", "key sk-live-5e8d3c2b1a09 rejected", "rejected"),
    "bearer header": (
        "tok.en-9a8b7c6d",
        "headers {'Authorization': 'Bearer tok.en-9a8b7c6d'}",
        "Authorization",
    ),
    "signed url query": (
        "X-Amz-Signature=deadbeef42",
        "GET https://cdn.example.com/out/v.mp4?X-Amz-Expires=600&X-Amz-Signature=deadbeef42",
        "https://cdn.example.com/out/v.mp4?",
    ),
    "callback token": (
        TOKEN,
        f"webhook POST https://hooks.example.com/hooks/{JOB}/{TOKEN} accepted",
        f"https://hooks.example.com/hooks/{JOB}/",
    ),
    "webhook secret": (CANARY_SECRET, f"secret is {CANARY_SECRET}", "secret is"),
}


@contextlib.contextmanager
def isolated_root() -> Iterator[logging.Logger]:
    """The root logger emptied for a test body and restored exactly afterwards.

    A context manager inside the test, not a fixture: pytest swaps its own capture
    handlers on the root logger between the setup, call and teardown phases.
    """
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {n: logging.getLogger(n).level for n in ("httpx", "httpcore")}
    root.handlers[:] = []
    try:
        yield root
    finally:
        root.handlers[:], root.level = handlers, level
        for name, saved in levels.items():
            logging.getLogger(name).setLevel(saved)
