"""The store owns the job keys: the webhook receiver reads a job through it, never Redis."""

from __future__ import annotations

import ast
from pathlib import Path

import worker.web.receiver as receiver

# Calls that would read or write a job's hash, or run a script of the receiver's own.
JOB_KEY_CALLS = {"key", "register_script", "eval", "evalsha", "hget", "hmget", "hgetall",
                 "hset", "hincrby", "hdel", "expire", "pipeline"}  # fmt: skip


def test_the_receiver_makes_no_redis_call_on_a_job_key() -> None:
    tree = ast.parse(Path(receiver.__file__).read_text())
    called = {
        node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    assert "read_gated" in called  # the store's read, which opens the re-fetch gate
    assert called & JOB_KEY_CALLS == set()
