"""The job record's compare-and-set, in Lua, and the plain values it is given.

One script applies a change only when the job is in an expected state and expected field
values hold; see :meth:`worker.job.store.JobStore.apply`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypedDict

from worker.job.states import FINAL_STATES_LUA

__all__ = ["CAS", "Change", "as_json", "text"]

# KEYS: job hash, active zset, state counts hash.
# ARGV: states (comma list, '*' = any non-final), new state ('' = keep), now, due
# ('' keep, '-' drop), retention seconds, json {field: expected}, json {field: forbidden},
# json {field: value} to set, json {field: n} to increment, job id,
# json {field: n} each field must be below (a forward-only claim), per-state set prefix.
# Returns {1, previous state} when applied, {0, current state or ''} otherwise.
CAS = """
local cur = redis.call('HGET', KEYS[1], 'state')
if not cur then return {0, ''} end
local finals = FINAL_STATES
local ok = false
if ARGV[1] == '*' then
  ok = not finals[cur]
else
  for s in string.gmatch(ARGV[1], '[^,]+') do if s == cur then ok = true end end
end
if not ok then return {0, cur} end
for f, v in pairs(cjson.decode(ARGV[6])) do
  if (redis.call('HGET', KEYS[1], f) or '') ~= tostring(v) then return {0, cur} end
end
for f, v in pairs(cjson.decode(ARGV[7])) do
  if (redis.call('HGET', KEYS[1], f) or '') == tostring(v) then return {0, cur} end
end
for f, n in pairs(cjson.decode(ARGV[11])) do
  if (tonumber(redis.call('HGET', KEYS[1], f)) or -1) >= tonumber(n) then return {0, cur} end
end
local now = ARGV[3]
for f, v in pairs(cjson.decode(ARGV[8])) do redis.call('HSET', KEYS[1], f, tostring(v)) end
for f, n in pairs(cjson.decode(ARGV[9])) do redis.call('HINCRBY', KEYS[1], f, n) end
redis.call('HSET', KEYS[1], 'updated_at', now)
local new = ARGV[2]
if new ~= '' and new ~= cur then
  redis.call('HSET', KEYS[1], 'state', new, 't_' .. new, now)
  redis.call('HINCRBY', KEYS[3], cur, -1)
  redis.call('HINCRBY', KEYS[3], new, 1)
  redis.call('SREM', ARGV[12] .. cur, ARGV[10])
  if not finals[new] then redis.call('SADD', ARGV[12] .. new, ARGV[10]) end
end
local state = redis.call('HGET', KEYS[1], 'state')
if finals[state] then
  redis.call('ZREM', KEYS[2], ARGV[10])
  redis.call('HDEL', KEYS[1], 'next_due')
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))
elseif ARGV[4] == '-' then
  redis.call('ZREM', KEYS[2], ARGV[10])
  redis.call('HDEL', KEYS[1], 'next_due')
elseif ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[2], tonumber(ARGV[4]), ARGV[10])
  redis.call('HSET', KEYS[1], 'next_due', ARGV[4])
end
return {1, cur}
""".replace("FINAL_STATES", FINAL_STATES_LUA, 1)  # the final states, from the one table


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def as_json(mapping: Mapping[str, object] | None) -> str:
    # cjson decodes '{}' and '[]' alike; an empty object must stay an object.
    return json.dumps({k: _plain(v) for k, v in (mapping or {}).items()}) if mapping else "{}"


def _plain(value: object) -> object:
    if isinstance(value, float):
        return repr(value)
    return value if isinstance(value, (str, int, bool)) else str(value)


class Change(TypedDict, total=False):
    """What a change checks and writes besides the state (:meth:`~worker.job.store.JobStore.apply`).

    It applies only if every ``where`` field equals its value, no ``where_not`` field
    does, and every ``below`` field (a claim number; missing counts as -1) is below its
    value; it then writes ``set``, adds ``incr`` and makes the job due at ``due``.
    ``durable``: a change a payment depends on; it waits for the replicas
    (:mod:`worker.infra.durability`) and raises :class:`~worker.errors.NotDurable` when it
    applied but too few confirmed it in time.
    """

    where: Mapping[str, object] | None
    where_not: Mapping[str, object] | None
    below: Mapping[str, int] | None
    set: Mapping[str, object] | None
    incr: Mapping[str, int] | None
    due: float | None
    durable: bool
