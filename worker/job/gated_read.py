"""The store's read of a job's fields that also opens a caller's gate key, in one round trip.

The webhook receiver decides from a few fields and rate-limits re-fetches per job with a
gate key (SET NX PX): both in one script, so a delivery costs no more round trips than a
plain read. Only :class:`worker.job.store.JobStore` runs it; the final states come from
the one table in :mod:`worker.job.states`.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis

from worker.job.cas import text
from worker.job.states import FINAL_STATES_LUA

__all__ = ["read_gated"]

# KEYS: the job hash, the gate key. ARGV: the gate's holder, its window in ms, the field
# names ('state' first). Returns {} for no job, else the fields (nil where missing) then
# 1 when this call opened the gate (only for a job that is not final), else 0.
_SCRIPT = """
local finals = FINAL_STATES
local f = redis.call('HMGET', KEYS[1], unpack(ARGV, 3))
if not f[1] then return {} end
local opened = 0
if not finals[f[1]] and redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  opened = 1
end
f[#f + 1] = opened
return f
""".replace("FINAL_STATES", FINAL_STATES_LUA, 1)  # the final states, from the one table


def read_gated(
    client: redis.Redis,
    key: str,
    *,
    names: Iterable[str],
    gate: str,
    holder: str,
    window_ms: int,
) -> tuple[dict[str, str] | None, bool]:
    """The fields of the job hash ``key`` that are present (None when there is no record)
    and whether this call opened ``gate`` for ``window_ms`` (SET NX PX ``holder``; only
    for a job that is not final)."""
    # A Script object is only its text and hash: made per call, it still runs as EVALSHA.
    script = client.register_script(_SCRIPT)
    fields = ["state", *(name for name in names if name != "state")]
    found = script(keys=[key, gate], args=[holder, window_ms, *fields])
    if not found:
        return None, False
    *values, opened = found
    data = {k: text(v) for k, v in zip(fields, values, strict=True) if v is not None}
    return data, int(opened) == 1
