"""The one exception tree of the package. httpx types never leave the client.

::

    RelayDanceError
    ├── InvalidRequest          bad input, refused before anything is enqueued or paid for
    ├── EnqueueFailed           the job could not be enqueued; it will never run
    ├── TransientError          retry with backoff (a submit: only if it never left)
    │   ├── TransportFailure    the call failed on the wire; it may have reached the provider
    │   │   └── NotSent         it provably never left: connect error, pool timeout
    │   ├── RateLimited         HTTP 429 (``retry_after`` seconds, when the provider said)
    │   ├── RetryableStatus     HTTP 408 or 409
    │   └── ServerError         HTTP 5xx that is not the provider's own answer (a gateway's
    │       │                   page, an empty 502/504): the request may have been done
    │       └── ErroredRequest  HTTP 5xx in the provider's own error JSON: it errored and,
    │                           as both providers document, was not billed
    ├── AccountFault            the key cannot be used now: the key pauses, the job waits
    │   ├── Unauthorized        HTTP 401: an invalid, missing or revoked key
    │   ├── InsufficientCredits HTTP 402 (Kinovi), or RelayDance's 403 "insufficient balance"
    │   ├── KeyForbidden        HTTP 403: the key's API access is not enabled
    │   └── ModelForbidden      HTTP 403 to a submission: the key may not use this model
    │                           (or the 403 does not say why: the narrower pause first)
    ├── Deferred                not an answer: the call may not go yet (a paused key, an
    │                           open breaker, the request rate); wait ``seconds``
    ├── NotDurable              a write was applied on the Redis primary, but too few
    │                           replicas confirmed it in time: what depends on it waits
    ├── PermanentError          fail the job now
    │   ├── BadRequest          HTTP 400, with the provider's message
    │   ├── Forbidden           HTTP 403 to a read: the task belongs to another key
    │   ├── NotFound            HTTP 404
    │   ├── GenerationFailed    the provider reported the task ``failed``
    │   ├── UnexpectedResponse  a response we cannot use (no task id, not JSON)
    │   ├── UnsafeUrl           a provider URL refused by the SSRF rules
    │   └── DownloadRejected    too large, not an mp4, or otherwise unusable
    └── StorageError            the output storage could not take a finished clip
        ├── StorageRefused      the bucket or directory refused the write (rights, no bucket)
        └── StorageUnavailable  the storage did not answer, or answered 5xx

Every error carries a short machine ``code`` that ends up in the job record.

For a submission, :class:`NotSent`, :class:`RateLimited`, :class:`ErroredRequest` and every
:class:`AccountFault` say that nothing was created: the provider answered, in its own
words, that it did not take the request. Every other failure after the request may have
left (a read timeout, a dropped connection, a gateway's 5xx page, a 2xx without a task id)
is an ambiguous submission: the task may exist and be billed, so it is never retried
blindly (see :mod:`worker.job.submit`).
"""

from __future__ import annotations

__all__ = [
    "AccountFault",
    "BadRequest",
    "Deferred",
    "DownloadRejected",
    "EnqueueFailed",
    "ErroredRequest",
    "Forbidden",
    "GenerationFailed",
    "InsufficientCredits",
    "InvalidRequest",
    "KeyForbidden",
    "ModelForbidden",
    "NotDurable",
    "NotFound",
    "NotSent",
    "PermanentError",
    "RateLimited",
    "RelayDanceError",
    "RetryableStatus",
    "ServerError",
    "StorageError",
    "StorageRefused",
    "StorageUnavailable",
    "TransientError",
    "TransportFailure",
    "Unauthorized",
    "UnexpectedResponse",
    "UnsafeUrl",
]


class RelayDanceError(Exception):
    """Root of every error this package raises."""

    code = "error"

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


class InvalidRequest(RelayDanceError, ValueError):
    """A render request that would be refused or wasted; names the field and the fix."""

    code = "invalid_request"

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        text = "; ".join(f"{field}: {msg}" for field, msg in problems)
        super().__init__(f"invalid render request: {text}")


class EnqueueFailed(RelayDanceError):
    """The job could not be enqueued (the broker refused); it will never run or be paid."""

    code = "enqueue_failed"


class TransientError(RelayDanceError):
    """A failure that may pass: retry with backoff."""

    code = "transient"


class TransportFailure(TransientError):
    """The call failed on the wire (reset, timed out); the request may have arrived."""

    code = "transport"


class NotSent(TransportFailure):
    """The request provably never left: no connection was made (refused, connect timeout)."""

    code = "not_sent"


class RateLimited(TransientError):
    """HTTP 429: too many requests or too many tasks in progress for this key."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message, status_code=429)
        self.retry_after = retry_after


class RetryableStatus(TransientError):
    """HTTP 408 or 409: the provider asks to try again."""

    code = "retryable_status"


class ServerError(TransientError):
    """HTTP 5xx that is not the provider's own error: the request may have been done."""

    code = "server_error"


class ErroredRequest(ServerError):
    """HTTP 5xx in the provider's own error JSON: the request errored and was not billed."""

    code = "errored_request"


class AccountFault(RelayDanceError):
    """The key cannot be used now (revoked, out of money, not allowed): pause, never fail.

    ``scope`` is what stops: ``"key"`` (every submission of the key; with
    :class:`Unauthorized`, every call) or ``"model"`` (the key's submissions of one model).
    """

    code = "account"
    scope = "key"


class Unauthorized(AccountFault):
    """HTTP 401: the API key is invalid, missing or revoked."""

    code = "unauthorized"


class InsufficientCredits(AccountFault):
    """HTTP 402 (Kinovi), or a 403 for insufficient balance (RelayDance): top up."""

    code = "insufficient_credits"


class KeyForbidden(AccountFault):
    """HTTP 403: the key's API access is not enabled."""

    code = "key_forbidden"


class ModelForbidden(AccountFault):
    """HTTP 403 to a submission: the key may not use this model (or the 403 said no more)."""

    code = "model_forbidden"
    scope = "model"


class Deferred(RelayDanceError):
    """The call may not go yet: wait ``seconds``; ``reason`` says why (never sent)."""

    code = "deferred"

    def __init__(self, message: str, *, seconds: float, reason: str) -> None:
        super().__init__(message)
        self.seconds = seconds
        self.reason = reason


class NotDurable(RelayDanceError):
    """A write the primary applied that too few replicas confirmed in time (Redis ``WAIT``):
    a failover could still lose it, so nothing paid may depend on it yet."""

    code = "not_durable"


class PermanentError(RelayDanceError):
    """A failure that retrying will not fix: fail the job now."""

    code = "permanent"


class BadRequest(PermanentError):
    """HTTP 400: the provider refused the request; ``message`` is the provider's."""

    code = "bad_request"


class Forbidden(PermanentError):
    """HTTP 403 to a read: the task belongs to another key (or another 403 of a read)."""

    code = "forbidden"


class NotFound(PermanentError):
    """HTTP 404: unknown task or path."""

    code = "not_found"


class GenerationFailed(PermanentError):
    """The provider reported the task as failed (not billed)."""

    code = "generation_failed"


class UnexpectedResponse(PermanentError):
    """The provider answered something this client cannot interpret."""

    code = "unexpected_response"


class UnsafeUrl(PermanentError):
    """A provider-supplied URL that the SSRF rules refuse (scheme, address, redirect)."""

    code = "unsafe_url"


class DownloadRejected(PermanentError):
    """The downloaded file is unusable: over the size cap or not an mp4."""

    code = "download_rejected"


class StorageError(RelayDanceError):
    """The output storage could not take a finished clip; the paid clip is still at the
    provider, so the delivery is retried later instead of failing the job at once."""

    code = "storage_error"


class StorageRefused(StorageError):
    """The storage refused the write: missing rights, no such bucket, bad credentials."""

    code = "storage_refused"


class StorageUnavailable(StorageError):
    """The storage did not answer, timed out, or answered 5xx."""

    code = "storage_unavailable"
