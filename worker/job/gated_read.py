"""The store's read of a job's fields that also opens a caller's gate key, in one round trip.

The webhook receiver decides from a few fields and rate-limits re-fetches per job with a
gate key (SET NX PX): both in one script, so a delivery costs no more round trips than a
plain read. Only :class:`worker.job.store.JobStore` runs it; the final states come from
the one table in :mod:`worker.job.states`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import redis
from redis.commands.core import Script

from worker.job.cas import text
from worker.job.states import FINAL_STATES

__all__ = ["GatedRead"]

# KEYS: the job hash, the gate key. ARGV: the gate's holder, its window in ms, the field
# names ('state' first). Returns {} for no job, else the fields (nil where missing) then
# 1 when this call opened the gate (only for a job that is not final), else 0.
_SCRIPT = (
    "local finals = {"
    + ", ".join(f"[{json.dumps(s.value)}] = true" for s in sorted(FINAL_STATES))
    + "}\n"
    + """
local f = redis.call('HMGET', KEYS[1], unpack(ARGV, 3))
if not f[1] then return {} end
local opened = 0
if not finals[f[1]] and redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  opened = 1
end
f[#f + 1] = opened
return f
"""
)


class GatedRead:
    """The script, registered once per client."""

    def __init__(self, client: redis.Redis) -> None:
        self._script: Script = client.register_script(_SCRIPT)

    def __call__(
        self, key: str, names: Iterable[str], *, gate: str, holder: str, window_ms: int
    ) -> tuple[dict[str, str] | None, bool]:
        """The fields present (None when there is no record) and whether the gate opened."""
        fields = ["state", *(name for name in names if name != "state")]
        found = self._script(keys=[key, gate], args=[holder, window_ms, *fields])
        if not found:
            return None, False
        *values, opened = found
        data = {k: text(v) for k, v in zip(fields, values, strict=True) if v is not None}
        return data, int(opened) == 1
