"""Key aliases as callers give them: short names, never keys, never echoed when unknown.

A caller names the key a job spends by its alias (``--key tenant-a``, ``key=`` in the
producer API, a batch file's ``key`` column). The alias is stored in the job record,
shown by ``status``, sent as task arguments and used as a metrics label, so a key pasted
where an alias belongs would spread everywhere, most of all in a producer that has no
keys configured and so cannot tell a known alias from anything else. An alias must
therefore look like a name (:data:`ALIAS`); one that looks like a key is refused with a
message that never repeats it, and an unknown alias is never echoed either (it may be a
mistyped key): the message lists the configured ones instead. A configured key given
as an alias is refused whatever its shape, by comparing it with every configured key
(a producer that holds no keys cannot tell, and relies on the shape rules).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Collection, Mapping

__all__ = ["ALIAS", "alias_problem", "looks_like_key"]

ALIAS = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,31}$", re.IGNORECASE)
# Prefixes of provider and platform secrets (sk-live-..., rk_..., Bearer ...).
_KEY_PREFIX = re.compile(r"^(sk|rk|pk)[-_]|^bearer\s", re.IGNORECASE)
# A long run of letters and digits with no separator: a token, not a name someone chose.
_TOKEN_RUN = re.compile(r"[a-z0-9]{20,}", re.IGNORECASE)
_HOW = (
    'put the key in RELAYDANCE_API_KEYS under an alias (e.g. {"tenant-a": "sk-..."}) and '
    "pass that alias"
)


def looks_like_key(text: str) -> bool:
    """Whether ``text`` looks like a secret rather than a name (prefix or random run)."""
    if _KEY_PREFIX.search(text.strip()):
        return True
    return any(
        any(c.isdigit() for c in run) and any(c.isalpha() for c in run)
        for run in _TOKEN_RUN.findall(text)
    )


def _is_a_configured_key(alias: str, configured: Collection[str]) -> bool:
    if not isinstance(configured, Mapping):
        return False
    given = alias.strip().encode()
    found = False
    for key in configured.values():
        secret = key.get_secret_value() if hasattr(key, "get_secret_value") else str(key)
        # Constant time, and every key compared: the answer says nothing of which matched.
        found |= bool(secret) and hmac.compare_digest(given, secret.strip().encode())
    return found


def alias_problem(alias: object, configured: Collection[str]) -> str | None:
    """Why ``alias`` cannot name a key here, without repeating it; None when it can.

    ``configured`` is the process's aliases; when it is the mapping of alias to key
    (``settings.keys()``, as every caller passes), an alias equal to any configured key is
    refused whatever its shape. When it is empty (a producer without keys) any
    well-formed name passes and the workers, which hold the keys, decide.
    """
    if not isinstance(alias, str) or not alias.strip():
        return "give a key alias as text (a name such as tenant-a)"
    if _is_a_configured_key(alias, configured):
        return f"is one of the configured API keys, not an alias; never pass the key: {_HOW}"
    if alias in configured:
        return None
    if looks_like_key(alias):
        return f"looks like an API key, not an alias; never pass the key itself: {_HOW}"
    if not ALIAS.match(alias):
        return (
            "the alias given is not a valid name: use 1-32 letters, digits, '.', '-' or '_', "
            "starting with a letter or digit"
        )
    if configured:
        return (
            f"the alias given is not configured; configured: {', '.join(sorted(configured))} "
            "(set RELAYDANCE_API_KEYS, or pick one of them)"
        )
    return None
