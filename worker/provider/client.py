"""The typed HTTP client for the provider: one pooled connection pool per process.

Every call takes the key as ``api_key: SecretStr``; its value is read only to build the
``Authorization`` header and is scrubbed from anything the provider echoes back. Failures
leave as :mod:`worker.errors` types, never httpx ones::

    no connection made           -> NotSent (connect error or timeout, pool timeout)
    read/write error or timeout  -> TransportFailure (the request may have arrived)
    the call's overall deadline  -> TransportFailure (every call has one: call_deadline)
    HTTP 400                     -> BadRequest (with the provider's message)
    HTTP 401 / 402 / 404         -> Unauthorized / InsufficientCredits / NotFound
    HTTP 403, by its message     -> InsufficientCredits (balance), KeyForbidden (access),
                                    ModelForbidden (a model; or a submission's unexplained
                                    403: the narrower pause first), Forbidden (a read's)
    HTTP 429                     -> RateLimited (retry_after from Retry-After)
    HTTP 408 / 409               -> RetryableStatus
    HTTP 5xx, provider's JSON    -> ErroredRequest (it errored; not billed)
    HTTP 5xx, anything else      -> ServerError (a gateway's page: it may have been done)
    other 4xx                    -> PermanentError, code "http_<status>"
    not JSON, missing task id    -> UnexpectedResponse

A task reported ``failed`` is returned, not raised: its status says so.
"""

from __future__ import annotations

import dataclasses
import json as jsonlib
import logging
import mimetypes
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import httpx
from pydantic import SecretStr

from config.settings import Settings
from worker.errors import (
    AccountFault,
    BadRequest,
    ErroredRequest,
    Forbidden,
    InsufficientCredits,
    InvalidRequest,
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
from worker.provider.dialects import (
    Dialect,
    Endpoint,
    RemoteTask,
    TaskStatus,
    forbidden_scope,
    get_dialect,
)
from worker.provider.retry_after import parse_retry_after
from worker.provider.transport import deadline, make_transport

__all__ = [
    "ApiClient",
    "RemoteTask",
    "TaskStatus",
    "parse_retry_after",
]

logger = logging.getLogger(__name__)

USER_AGENT = "relaydance-worker/0.1"
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


def _scrub(text: str, secret: str) -> str:
    # Providers sometimes quote the key back ("invalid key sk-..."): never pass it on.
    return text.replace(secret, _REDACTED) if secret else text


class ApiClient:
    """Typed calls to the provider over one pooled ``httpx.Client``; thread-safe."""

    def __init__(
        self,
        *,
        base_url: str,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        call_deadline: float = 60.0,
        upload_deadline: float = 600.0,
        transport: httpx.BaseTransport | None = None,
        dialect: Dialect | str = "relaydance",
    ) -> None:
        self._dialect = get_dialect(dialect) if isinstance(dialect, str) else dialect
        self._base_url = base_url.rstrip("/")
        self._call_deadline = call_deadline
        self._upload_deadline = upload_deadline
        self._http = httpx.Client(
            base_url=self._base_url,
            # The pool wait is bounded too: a call that never got a connection never left.
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout, pool=connect_timeout),
            transport=transport or make_transport(),
            # The API never redirects; a redirect would carry the key to another origin.
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, transport: httpx.BaseTransport | None = None
    ) -> ApiClient:
        """A client configured by ``settings`` (base url, timeouts, dialect)."""
        return cls(
            base_url=settings.base_url,
            connect_timeout=settings.http_connect_timeout,
            read_timeout=settings.http_read_timeout,
            call_deadline=settings.http_call_deadline,
            upload_deadline=settings.download_timeout,
            transport=transport,
            dialect=settings.dialect,
        )

    @property
    def dialect(self) -> Dialect:
        """The provider dialect this client speaks."""
        return self._dialect

    @property
    def is_closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._http.is_closed

    def __repr__(self) -> str:
        return f"ApiClient(base_url={self._base_url!r}, dialect={self._dialect.name!r})"

    # Operations ---------------------------------------------------------------------------

    def submit(
        self,
        body: Mapping[str, Any],
        *,
        api_key: SecretStr,
        idempotency_key: str | None = None,
    ) -> RemoteTask:
        """POST a new generation task; ``body`` is the RelayDance-format request body."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        data, _ = self._call(
            "POST",
            self._dialect.submit_endpoint(),
            api_key=api_key,
            json=self._dialect.submit_body(body),
            headers=headers,
            submits=True,
        )
        return self._dialect.parse_submit(data)

    def get_task(self, task_id: str, *, api_key: SecretStr) -> RemoteTask:
        """The task's current state; a ``failed`` task is returned, not raised."""
        data, response = self._call("GET", self._dialect.task_endpoint(task_id), api_key=api_key)
        task = self._dialect.parse_task(data, task_id=task_id)
        hint = parse_retry_after(response.headers.get("Retry-After"))
        if hint is None:
            return task
        return dataclasses.replace(task, retry_after=hint)

    def upload(
        self,
        path: Path,
        *,
        api_key: SecretStr,
        content_type: str | None = None,
        handle: BinaryIO | None = None,
    ) -> str:
        """Upload a local file (multipart field ``file``, streamed) and return its url.

        ``handle`` is the file already opened (and checked) by the caller; it is closed here.
        """
        path = Path(path)
        content_type = content_type or mimetypes.guess_type(path.name)[0]
        try:
            handle = handle or path.open("rb")
        except OSError as exc:
            raise InvalidRequest(
                [(str(path), f"cannot read the file to upload ({exc.strerror or exc})")]
            ) from None
        with handle:
            files = {"file": (path.name, handle, content_type or "application/octet-stream")}
            data, _ = self._call(
                "POST",
                self._dialect.upload_endpoint(),
                api_key=api_key,
                files=files,
                within=self._upload_deadline,
            )
        return self._dialect.parse_upload(data)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # Transport ----------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        endpoint: Endpoint,
        *,
        api_key: SecretStr,
        json: Any = None,
        files: Any = None,
        headers: Mapping[str, str] | None = None,
        within: float | None = None,
        submits: bool = False,
    ) -> tuple[Any, httpx.Response]:
        secret = api_key.get_secret_value()
        where = f"{method} {self._http.base_url.path.rstrip('/')}{endpoint.path}"
        request_headers = {**(headers or {}), "Authorization": f"Bearer {secret}"}
        started = time.perf_counter()
        error: RelayDanceError
        try:
            with deadline(within or self._call_deadline):
                response = self._http.request(
                    method,
                    endpoint.path,
                    params=dict(endpoint.params) or None,
                    json=json,
                    files=files,
                    headers=request_headers,
                )
        except httpx.RequestError as exc:
            error = _request_error(where, exc, secret)
        else:
            elapsed_ms = (time.perf_counter() - started) * 1000
            logger.debug("%s -> %d in %.0f ms", where, response.status_code, elapsed_ms)
            if not response.is_success:
                raise self._status_error(where, response, secret, submits=submits)
            try:
                return response.json(), response
            except ValueError:
                raise UnexpectedResponse(
                    f"{where} -> HTTP {response.status_code}: response is not valid JSON",
                    status_code=response.status_code,
                ) from None
        # Raised outside the except blocks so the httpx exception (which holds the request
        # and its Authorization header) is not chained as __context__.
        logger.debug(
            "%s failed after %.0f ms: %s", where, (time.perf_counter() - started) * 1000, error
        )
        raise error

    def _status_error(
        self, where: str, response: httpx.Response, secret: str, *, submits: bool
    ) -> RelayDanceError:
        status = response.status_code
        # Scrub before parsing and cutting short, so no fragment of an echoed key survives.
        text = _scrub(response.text, secret)
        try:
            body: Any = jsonlib.loads(text)
        except ValueError:
            body = text
        said = self._dialect.error_message(body, status=status)
        message = f"{where} -> HTTP {status}" + (f": {said}" if said else "")
        if status == 429:
            return RateLimited(
                message, retry_after=parse_retry_after(response.headers.get("Retry-After"))
            )
        if status >= 500:
            # Only the provider's own error JSON proves the request errored (not billed); a
            # gateway's page or an empty 502/504 says nothing of what happened behind it.
            own = _is_json(response) and bool(self._dialect.is_own_error(body))
            return (ErroredRequest if own else ServerError)(message, status_code=status)
        if status in (408, 409):
            return RetryableStatus(message, status_code=status)
        if status == 403:
            scope = forbidden_scope(self._dialect.error_message(body))
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


def _request_error(where: str, exc: httpx.RequestError, secret: str) -> RelayDanceError:
    """Our error for a request that got no answer: provably unsent, or ambiguous."""
    name = type(exc).__name__
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        # No connection was made: the request provably never reached the provider.
        return NotSent(f"{where}: not sent ({name}: {_scrub(str(exc), secret)[:200]})")
    if isinstance(exc, httpx.TimeoutException):
        return TransportFailure(f"{where}: timed out ({name})")
    if isinstance(exc, httpx.TransportError):
        return TransportFailure(f"{where}: {name}: {_scrub(str(exc), secret)[:200]}")
    if isinstance(exc, httpx.DecodingError):
        return UnexpectedResponse(f"{where}: response body could not be decoded")
    return TransportFailure(f"{where}: {name}")
