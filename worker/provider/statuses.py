"""What a provider's answer means: an HTTP status, or a request that got none, as our error.

:class:`~worker.provider.client.ApiClient` calls these for every operation, so a submit, a
poll, an upload and an image generation read the same answer the same way (the table is
in the client's docstring). The dialect reads the body (its message, whether it is the
provider's own error JSON); the status decides the type. The key's value is scrubbed from
anything the provider echoes back, before it is parsed or cut short.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from worker.errors import (
    AccountFault,
    BadRequest,
    ErroredRequest,
    Forbidden,
    InsufficientCredits,
    KeyForbidden,
    ModelForbidden,
    NotFound,
    NotSent,
    PermanentError,
    RateLimited,
    RelayDanceError,
    RetryableStatus,
    ServerError,
    TransportFailure,
    Unauthorized,
    UnexpectedResponse,
)
from worker.provider.dialects import Dialect, forbidden_scope
from worker.provider.retry_after import parse_retry_after

__all__ = ["request_error", "scrub", "status_error"]

_REDACTED = "[redacted]"

_BY_STATUS: dict[int, type[PermanentError] | type[AccountFault]] = {
    400: BadRequest,
    401: Unauthorized,
    402: InsufficientCredits,
    404: NotFound,
}
# A 403's scope, by its message; a submission's unexplained 403 pauses only its model.
_FORBIDDEN: dict[str, type[PermanentError] | type[AccountFault]] = {
    "balance": InsufficientCredits,
    "key": KeyForbidden,
    "model": ModelForbidden,
    "task": Forbidden,
}


def scrub(text: str, secret: str) -> str:
    """``text`` without the key: providers sometimes quote it back ("invalid key sk-...")."""
    return text.replace(secret, _REDACTED) if secret else text


def status_error(
    dialect: Dialect, where: str, response: httpx.Response, secret: str, *, submits: bool
) -> RelayDanceError:
    """Our error for a non-2xx answer; ``submits``: the call creates something (a task, images)."""
    status = response.status_code
    # Scrub before parsing and cutting short, so no fragment of an echoed key survives.
    text = scrub(response.text, secret)
    try:
        body: Any = json.loads(text)
    except ValueError:
        body = text
    said = dialect.error_message(body, status=status)
    message = f"{where} -> HTTP {status}" + (f": {said}" if said else "")
    if status == 429:
        return RateLimited(
            message, retry_after=parse_retry_after(response.headers.get("Retry-After"))
        )
    if status >= 500:
        # Only the provider's own error JSON proves the request errored (not billed); a
        # gateway's page or an empty 502/504 says nothing of what happened behind it.
        own = _is_json(response) and bool(dialect.is_own_error(body))
        return (ErroredRequest if own else ServerError)(message, status_code=status)
    if status in (408, 409):
        return RetryableStatus(message, status_code=status)
    if status == 403:
        scope = forbidden_scope(dialect.error_message(body))
        if scope == "unknown":
            scope = "model" if submits else "task"
        return _FORBIDDEN[scope](message, status_code=status)
    if status in _BY_STATUS:
        return _BY_STATUS[status](message, status_code=status)
    if 400 <= status < 500:
        error = PermanentError(message, status_code=status)
        error.code = f"http_{status}"
        return error
    # 1xx/3xx: the API never answers these; following a redirect could leak the key.
    return UnexpectedResponse(message, status_code=status)


def _is_json(response: httpx.Response) -> bool:
    kind = str(response.headers.get("content-type", "")).split(";")[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json")


def request_error(where: str, exc: httpx.RequestError, secret: str) -> RelayDanceError:
    """Our error for a request that got no answer: provably unsent, or ambiguous."""
    name = type(exc).__name__
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        # No connection was made: the request provably never reached the provider.
        return NotSent(f"{where}: not sent ({name}: {scrub(str(exc), secret)[:200]})")
    if isinstance(exc, httpx.TimeoutException):
        return TransportFailure(f"{where}: timed out ({name})")
    if isinstance(exc, httpx.TransportError):
        return TransportFailure(f"{where}: {name}: {scrub(str(exc), secret)[:200]}")
    if isinstance(exc, httpx.DecodingError):
        return UnexpectedResponse(f"{where}: response body could not be decoded")
    return TransportFailure(f"{where}: {name}")
