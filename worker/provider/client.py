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
    not JSON, missing task id    -> UnexpectedResponse (or no image url)

A task reported ``failed`` is returned, not raised: its status says so. The mapping lives
in :mod:`worker.provider.statuses`; an image generation reads its answer as a submission
does (it creates something, and bills on success).
"""

from __future__ import annotations

import dataclasses
import logging
import mimetypes
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import httpx
from pydantic import SecretStr

from worker.errors import InvalidRequest, RelayDanceError, UnexpectedResponse
from worker.provider.dialects import Dialect, Endpoint, RemoteTask, TaskStatus, get_dialect
from worker.provider.retry_after import parse_retry_after
from worker.provider.settings import ProviderSettings
from worker.provider.statuses import request_error, status_error
from worker.provider.transport import deadline, make_transport

__all__ = [
    "ApiClient",
    "RemoteTask",
    "TaskStatus",
    "parse_retry_after",
]

logger = logging.getLogger(__name__)

USER_AGENT = "relaydance-worker/0.1"


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
        cls,
        settings: ProviderSettings,
        *,
        alias: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> ApiClient:
        """A client configured by ``settings`` (timeouts; dialect and base url: the default
        provider's, or the route of ``alias``)."""
        return cls(
            base_url=settings.base_url if alias is None else settings.base_url_for(alias),
            connect_timeout=settings.http_connect_timeout,
            read_timeout=settings.http_read_timeout,
            call_deadline=settings.http_call_deadline,
            upload_deadline=settings.download_timeout,
            transport=transport,
            dialect=settings.dialect if alias is None else settings.provider_for(alias),
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

    def generate_images(
        self,
        body: Mapping[str, Any],
        *,
        api_key: SecretStr,
        idempotency_key: str | None = None,
    ) -> list[str]:
        """POST a synchronous image generation; return the urls of the images, in order.

        ``body`` is the documented ``/images/generations`` body (``ImageRequest.to_body``).
        There is no task id: the reply is the only record of the (billed) images, so a
        failure after the request may have left is ambiguous, exactly as for :meth:`submit`.
        Raises ``PermanentError`` (code ``images_unsupported``) on a provider with no images.
        """
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        endpoint = self._dialect.images_endpoint()  # a provider without images refuses here
        data, _ = self._call("POST", endpoint, api_key=api_key, headers=headers, submits=True,
                             json=self._dialect.images_body(body))  # fmt: skip
        return self._dialect.parse_images(data)

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
            error = request_error(where, exc, secret)
        else:
            elapsed_ms = (time.perf_counter() - started) * 1000
            logger.debug("%s -> %d in %.0f ms", where, response.status_code, elapsed_ms)
            if not response.is_success:
                raise status_error(self._dialect, where, response, secret, submits=submits)
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
