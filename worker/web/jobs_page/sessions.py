"""Sign-in state in Redis: revocable sessions, and the throttle on failed sign-ins.

A session is a random id (256 bits) in the browser's cookie and a Redis key named by its
SHA-256 (so a reader of Redis cannot lift a live cookie from it) holding the fingerprint
of the credentials it was opened with. It ends when it expires, when the user signs out
(the key is deleted, so a copied cookie dies with it), or when the credentials change
(the fingerprint no longer matches). Every process serving the page shares them.

Failed sign-ins (a wrong Bearer token, Basic credentials or form) are counted per client
address (IPv6 by /64: one host holds a whole /64) and per account (the token, or the
user) in windows of :data:`WINDOW` seconds. Past :data:`CLIENT_LIMIT` failures from one
client, or :data:`ACCOUNT_LIMIT` against one account from anywhere, every attempt,
right or wrong, is answered 429 with ``Retry-After`` until the window ends: guessing
stops paying. A session already open is not an attempt, so it keeps working while its
account is throttled. Each check is one Redis round trip.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
from dataclasses import dataclass

import redis
from redis.commands.core import Script

__all__ = [
    "ACCOUNT_LIMIT",
    "CLIENT_LIMIT",
    "SESSION_SECONDS",
    "WINDOW",
    "Opening",
    "SessionStore",
    "SignInThrottle",
    "Verdict",
    "client_group",
]

SESSION_SECONDS = 12 * 3600
WINDOW = 600
CLIENT_LIMIT = 10  # failed attempts from one client per window
ACCOUNT_LIMIT = 50  # failed attempts against one account per window, from anywhere
_PREFIX = "rd:ui:"
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Opening:
    """A session about to be opened: its id (the cookie) and its Redis record."""

    session_id: str
    key: str
    fingerprint: str
    seconds: int


class SessionStore:
    """Open, check and end jobs page sessions."""

    def __init__(self, client: redis.Redis, *, seconds: int = SESSION_SECONDS) -> None:
        self._redis = client
        self.seconds = seconds

    def _key(self, session_id: str) -> str:
        return f"{_PREFIX}session:{_digest(session_id)}"

    def opening(self, fingerprint: str) -> Opening:
        """A new session for the credentials ``fingerprint`` names, not yet written: the
        throttle writes it when the sign-in is right and allowed."""
        session_id = secrets.token_urlsafe(32)
        return Opening(session_id, self._key(session_id), fingerprint, self.seconds)

    def valid(self, session_id: str, fingerprint: str) -> bool:
        """Whether ``session_id`` is a live session of these credentials."""
        if not _SESSION_ID.fullmatch(session_id):
            return False  # an old-format or forged cookie: no Redis round trip
        stored = self._redis.get(self._key(session_id))
        if stored is None:
            return False
        text = stored.decode() if isinstance(stored, bytes) else str(stored)
        return hmac.compare_digest(text.encode(), fingerprint.encode())

    def end(self, session_id: str) -> None:
        """End a session everywhere (sign-out)."""
        if _SESSION_ID.fullmatch(session_id):
            self._redis.delete(self._key(session_id))


@dataclass(frozen=True)
class Verdict:
    """What the throttle says about one attempt."""

    allowed: bool  # False: refuse it (429), right or wrong
    retry_after: int = 0  # seconds, when refused


# KEYS: client counter, account counter, and optionally a session to open when the attempt
# is right and allowed. ARGV: ok (1/0), client limit, account limit, window, and the
# session's value and lifetime. Returns {allowed (1/0), seconds to wait}. A refused attempt
# is not counted again. One round trip for a sign-in, session included.
_RECORD = """
local limits = {tonumber(ARGV[2]), tonumber(ARGV[3])}
local function wait()
  local longest = 0
  for i = 1, 2 do
    local count = tonumber(redis.call('GET', KEYS[i]) or '0')
    if count >= limits[i] then longest = math.max(longest, redis.call('TTL', KEYS[i])) end
  end
  return longest
end
local before = wait()
if before ~= 0 then return {0, math.max(before, 1)} end
if ARGV[1] == '1' then
  if KEYS[3] then redis.call('SET', KEYS[3], ARGV[5], 'EX', ARGV[6]) end
  return {1, 0}
end
for i = 1, 2 do
  if redis.call('INCR', KEYS[i]) == 1 then redis.call('EXPIRE', KEYS[i], ARGV[4]) end
end
return {1, 0}
"""


def client_group(address: str | None) -> str:
    """What the per-client count is keyed by: the IPv4 address, or the IPv6 /64."""
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class SignInThrottle:
    """Counts failed sign-ins per client and per account; refuses past the limits."""

    def __init__(
        self, client: redis.Redis, *, client_limit: int = CLIENT_LIMIT,
        account_limit: int = ACCOUNT_LIMIT, window: int = WINDOW,
    ) -> None:  # fmt: skip
        self._redis = client
        self.limits = (client_limit, account_limit)
        self.window = window
        self._script: Script = client.register_script(_RECORD)

    def record(
        self, *, client: str | None, account: str, ok: bool, session: Opening | None = None
    ) -> Verdict:
        """Check, then count, one attempt: refused while either count is at its limit.
        A right, allowed attempt opens ``session`` in the same round trip."""
        keys = [f"{_PREFIX}fail:client:{client_group(client)}", f"{_PREFIX}fail:account:{account}"]
        if ok and session is None:
            # The common case (a script's right Bearer token, on every request): a plain
            # read of both counts, cheaper than the script; nothing to write.
            counts = self._redis.mget(keys)
            if all(int(c or 0) < limit for c, limit in zip(counts, self.limits, strict=True)):
                return Verdict(True)
        args: list[str | int] = [1 if ok else 0, *self.limits, self.window]
        if session is not None:
            keys.append(session.key)
            args += [session.fingerprint, session.seconds]
        allowed, wait = self._script(keys=keys, args=args)
        return Verdict(bool(int(allowed)), int(wait))
