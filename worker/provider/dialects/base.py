"""What every dialect speaks: the provider-neutral task, status, endpoint and protocol.

Apart from the registry (:mod:`worker.provider.dialects`) so that each dialect module imports
these types without importing the package that lists it.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Protocol

from worker.provider.urlsafety import redact_url

__all__ = [
    "Dialect",
    "Endpoint",
    "ForbiddenScope",
    "RemoteTask",
    "TaskStatus",
    "forbidden_scope",
    "unix_seconds",
]

ForbiddenScope = Literal["balance", "key", "model", "task", "unknown"]

# What a 403's message says, in the words the providers' pages use: first match wins.
_FORBIDDEN_WORDS: tuple[tuple[ForbiddenScope, re.Pattern[str]], ...] = (
    ("balance", re.compile(r"balance|insufficient|credit|quota|top.?up|recharge|billing|fund")),
    ("task", re.compile(r"\btasks?\b|own task|another (key|user|account)")),
    ("model", re.compile(r"\bmodels?\b")),
    ("key", re.compile(r"not enabled|disabled|suspended|banned|blocked|access|permission")),
)


def unix_seconds(value: Any, *, millis: bool = False) -> float | None:
    """A provider's timestamp (seconds, or milliseconds when ``millis``) as Unix seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return value / 1000 if millis else float(value)


def forbidden_scope(message: str | None) -> ForbiddenScope:
    """What a 403 refuses, read from its message: the account's ``balance``, the ``key``'s
    access, one ``model``, another key's ``task``, or ``unknown`` (nothing said)."""
    text = (message or "").lower()
    for scope, pattern in _FORBIDDEN_WORDS:
        if pattern.search(text):
            return scope
    return "unknown"


class TaskStatus(enum.StrEnum):
    """The provider-neutral state of a remote task."""

    SUBMITTED = "submitted"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    # A status string this code does not know: not final, so the job keeps polling.
    UNKNOWN = "unknown"

    @property
    def is_final(self) -> bool:
        """True when the provider will not change this task any more."""
        return self in (TaskStatus.SUCCEEDED, TaskStatus.FAILED)


@dataclass(frozen=True, repr=False)
class RemoteTask:
    """A remote generation task as the provider last described it."""

    task_id: str
    status: TaskStatus
    url: str | None = None
    error: str | None = None
    raw_status: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # Seconds the provider asked us to wait before asking again (a Retry-After header).
    retry_after: float | None = None
    # What the provider says the task cost, in USD, when it says (Kinovi's creditsUsed).
    actual_cost: float | None = None
    # When the provider says it created the task (Unix seconds), when it says.
    created_at: float | None = None

    @property
    def is_final(self) -> bool:
        """True once the task succeeded or failed."""
        return self.status.is_final

    def __repr__(self) -> str:
        # The url is signed and extra may hold a callback url with its token: show neither.
        shown_url = redact_url(self.url) if self.url else None
        return (
            f"RemoteTask(task_id={self.task_id!r}, status={self.status.value!r}, "
            f"raw_status={self.raw_status!r}, url={shown_url!r}, "
            f"error={self.error!r}, extra_keys={sorted(self.extra)!r}, "
            f"retry_after={self.retry_after!r}, actual_cost={self.actual_cost!r}, "
            f"created_at={self.created_at!r})"
        )


@dataclass(frozen=True)
class Endpoint:
    """Where an operation goes: a path relative to the base URL, plus query parameters."""

    path: str
    params: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


class Dialect(Protocol):
    """Everything provider-specific apart from transport; the client calls only these."""

    name: str
    # Where the provider lives when a key names no base_url.
    default_base_url: str
    # Whether its API takes an Idempotency-Key at all (else none may declare it honoured).
    takes_idempotency_key: bool

    def submit_endpoint(self) -> Endpoint:
        """Where a new task is POSTed."""
        ...

    def task_endpoint(self, task_id: str) -> Endpoint:
        """Where a task's state is read with GET."""
        ...

    def upload_endpoint(self) -> Endpoint:
        """Where a local file is POSTed as multipart field ``file``."""
        ...

    def images_endpoint(self) -> Endpoint:
        """Where a synchronous image generation is POSTed; a provider without images raises
        a ``PermanentError`` here, before anything is sent."""
        ...

    def images_body(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Translate a RelayDance-format image request body into this provider's format."""
        ...

    def parse_images(self, data: Any) -> list[str]:
        """The image urls an image generation answered; raises UnexpectedResponse without."""
        ...

    def submit_body(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Translate a RelayDance-format request body into this provider's format."""
        ...

    def parse_submit(self, data: Any) -> RemoteTask:
        """The task a submit response describes; raises UnexpectedResponse without an id."""
        ...

    def parse_task(self, data: Any, *, task_id: str | None = None) -> RemoteTask:
        """The task a poll response or webhook body describes."""
        ...

    def parse_upload(self, data: Any) -> str:
        """The hosted url of an uploaded file."""
        ...

    def webhook_task_id(self, data: Any) -> Any:
        """The raw task id a webhook body names (any JSON value, checked by the caller)."""
        ...

    def error_message(self, data: Any, *, status: int | None = None) -> str | None:
        """The provider's human message in an error body (of HTTP ``status``), if any."""
        ...

    def is_own_error(self, data: Any) -> bool:
        """Whether a parsed JSON error body has the provider's own documented shape (a
        5xx in it is the provider's answer: the request errored, and was not billed)."""
        ...
