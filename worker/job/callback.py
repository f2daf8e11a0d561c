"""The callback URL a job carries, and the token in it that authenticates a delivery.

The URL is ``<base>/<job id>/<mac>.<expires>`` with mac = HMAC-SHA256(secret, job id and
expires): the provider documents no signature, so the path itself authenticates the
caller, and it stops working at ``expires`` (unix seconds), a day past the job's poll
deadline, so a leaked or replayed URL does not live forever. The submit step writes the
URL into the request; the receiver (:mod:`worker.web.receiver`) checks it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time

from config.settings import Settings

__all__ = [
    "TOKEN_GRACE_SECONDS",
    "callback_url_for",
    "claim_proof",
    "token_for",
    "token_status",
    "verify_claim",
    "verify_token",
]

_TOKEN = re.compile(r"([0-9a-f]{64})\.([0-9]{1,12})")
_CLAIM = re.compile(r"([0-9]{1,18})\.([0-9a-f]{32})")
# A callback URL outlives the job's poll deadline by this much (a late or retried delivery).
TOKEN_GRACE_SECONDS = 86400


def token_for(secret: str, job_id: str, *, expires: int | None = None) -> str:
    """The callback token of a job: ``<mac>.<expires>``; ``expires`` defaults to a day on."""
    if expires is None:
        expires = int(time.time()) + TOKEN_GRACE_SECONDS
    return f"{_mac(secret, job_id, expires)}.{expires}"


def _mac(secret: str, job_id: str, expires: int) -> str:
    message = f"{job_id}.{expires}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_token(secret: str, job_id: str, token: str, *, now: float | None = None) -> bool:
    """Whether ``token`` is the job's token and has not expired (constant-time compare)."""
    return token_status(secret, job_id, token, now=now) == "ok"


def token_status(secret: str, job_id: str, token: str, *, now: float | None = None) -> str:
    """``ok``, ``expired`` (genuine but past its time) or ``wrong``."""
    match = _TOKEN.fullmatch(token)
    if match is None:
        return "wrong"
    expires = int(match.group(2))
    if not hmac.compare_digest(_mac(secret, job_id, expires).encode(), match.group(1).encode()):
        return "wrong"
    return "ok" if expires > (time.time() if now is None else now) else "expired"


def claim_proof(secret: str, job_id: str, claim: int) -> str:
    """``<claim>.<mac>``: names the submission (by its claim number) a callback URL was made
    for, so that only a delivery through that submission's own URL can adopt its task."""
    mac = hmac.new(secret.encode(), f"{job_id}.claim.{claim}".encode(), hashlib.sha256)
    return f"{claim}.{mac.hexdigest()[:32]}"


def verify_claim(secret: str, job_id: str, proof: str) -> int | None:
    """The claim number a genuine proof names, or None (constant-time compare)."""
    match = _CLAIM.fullmatch(proof)
    if match is None:
        return None
    claim = int(match.group(1))
    expected = claim_proof(secret, job_id, claim).encode()
    return claim if hmac.compare_digest(expected, proof.encode()) else None


def callback_url_for(
    settings: Settings, job_id: str, *, claim: int | None = None, now: float | None = None
) -> str | None:
    """The job's ``metadata.callback_url``, or None when webhooks are off.

    It expires :data:`TOKEN_GRACE_SECONDS` after the job's poll deadline, counted from
    ``now`` (the submission). ``claim`` (the submission's claim number) is proven in the
    query (``?c=``): the task a delivery names may be adopted only for that submission.
    """
    if not settings.webhook_base_url or settings.webhook_secret is None:
        return None
    secret = settings.webhook_secret.get_secret_value()
    start = time.time() if now is None else now
    expires = int(start + settings.poll_deadline_seconds) + TOKEN_GRACE_SECONDS
    url = f"{settings.webhook_base_url}/{job_id}/{token_for(secret, job_id, expires=expires)}"
    return url if claim is None else f"{url}?c={claim_proof(secret, job_id, claim)}"
