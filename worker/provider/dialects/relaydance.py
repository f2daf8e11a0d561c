"""The RelayDance dialect (seeds 001, 002, 004): paths, bodies and response parsing.

Responses are read tolerantly: unknown fields are kept in ``RemoteTask.extra``, an unknown
status becomes ``TaskStatus.UNKNOWN`` (not final, so the job keeps polling), and error
bodies of any shape yield a message or ``None``. Only a response without the one thing it
exists to deliver (a task id, an upload url) is an :class:`UnexpectedResponse`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from worker.errors import UnexpectedResponse
from worker.provider.dialects.base import Endpoint, RemoteTask, TaskStatus, unix_seconds

__all__ = [
    "RelayDanceDialect",
    "error_message",
    "is_own_error",
    "parse_images",
    "parse_status",
    "parse_submit",
    "parse_task",
    "parse_upload",
]

SUBMIT_PATH = "/video/generations"
TASK_PATH = "/video/generations/{task_id}"
UPLOAD_PATH = "/files"
IMAGES_PATH = "/images/generations"

# Provider messages end up in job records and logs; a page of HTML is not a message.
MAX_MESSAGE_CHARS = 500

_STATUSES = {
    "submitted": TaskStatus.SUBMITTED,
    "running": TaskStatus.RUNNING,
    "succeeded": TaskStatus.SUCCEEDED,
    "failed": TaskStatus.FAILED,
}
_KNOWN_TASK_FIELDS = frozenset({"task_id", "status", "url", "error"})
# Where a failed task or an error body may put its reason, most specific first.
_MESSAGE_FIELDS = ("error", "message", "detail", "fail_reason", "failure_reason", "msg")


def _short(text: str) -> str | None:
    text = " ".join(text.split())
    if not text:
        return None
    if len(text) > MAX_MESSAGE_CHARS:
        return text[: MAX_MESSAGE_CHARS - 3] + "..."
    return text


def error_message(data: Any) -> str | None:
    """The human message in an error body of any shape; ``None`` when there is none."""
    if isinstance(data, str):
        return _short(data)
    if isinstance(data, Mapping):
        for name in _MESSAGE_FIELDS:
            value = data.get(name)
            if isinstance(value, str):
                found = _short(value)
            elif isinstance(value, Mapping):
                # {"error": {"message": ..., "type": ...}}, the OpenAI-compatible shape.
                found = error_message(value)
            elif isinstance(value, list) and value:
                # {"detail": [{"msg": ...}, ...]}, the FastAPI validation shape.
                found = error_message(value[0])
            else:
                found = None
            if found:
                return found
    return None


def is_own_error(data: Any) -> bool:
    """Whether ``data`` is RelayDance's documented error body (the Error Codes page)."""
    if not isinstance(data, Mapping):
        return False
    inner = data.get("error")
    return isinstance(inner, Mapping) and any(
        isinstance(inner.get(name), str) and inner.get(name) for name in ("message", "type")
    )


def parse_status(value: Any) -> TaskStatus:
    """The neutral status of a RelayDance status string; anything unknown is UNKNOWN."""
    if isinstance(value, str):
        return _STATUSES.get(value.strip().lower(), TaskStatus.UNKNOWN)
    return TaskStatus.UNKNOWN


def _unwrap(data: Any, *, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise UnexpectedResponse(f"{what} is not a JSON object (got {type(data).__name__})")
    # Tolerate an OpenAI-style envelope {"data": {...}} around the documented object.
    inner = data.get("data")
    if "task_id" not in data and "url" not in data and isinstance(inner, Mapping):
        return inner
    return data


def _task_id(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | str):
        text = str(value).strip()
        return text or None
    return None


def parse_task(data: Any, *, task_id: str | None = None) -> RemoteTask:
    """A task from a poll response or webhook body; ``task_id`` fills a missing id."""
    body = _unwrap(data, what="task response")
    found = _task_id(body.get("task_id"))
    if found is None:
        found = task_id
    if found is None:
        hint = error_message(body)
        raise UnexpectedResponse(
            "task response has no task_id" + (f" (provider said: {hint})" if hint else "")
        )
    if task_id is not None and found != task_id:
        raise UnexpectedResponse(f"asked for task {task_id} but the response is for {found}")
    raw = body.get("status")
    status = parse_status(raw)
    url = body.get("url")
    error = None
    if status is TaskStatus.FAILED or body.get("error") is not None:
        error = error_message(body)
    return RemoteTask(
        task_id=found,
        status=status,
        url=url if isinstance(url, str) and url else None,
        error=error,
        raw_status="" if raw is None else str(raw),
        extra={k: v for k, v in body.items() if k not in _KNOWN_TASK_FIELDS},
        created_at=unix_seconds(body.get("created_at", body.get("created"))),
    )


def parse_submit(data: Any) -> RemoteTask:
    """The task a submit response names; a response without a task id is unusable."""
    body = _unwrap(data, what="submit response")
    if _task_id(body.get("task_id")) is None:
        hint = error_message(body)
        raise UnexpectedResponse(
            "submit response has no task_id" + (f" (provider said: {hint})" if hint else "")
        )
    task = parse_task(body)
    if task.raw_status == "":
        # An accepted POST with an id is a submitted task, whether or not it says so.
        return RemoteTask(task_id=task.task_id, status=TaskStatus.SUBMITTED, extra=task.extra)
    return task


def parse_upload(data: Any) -> str:
    """The hosted url from a ``POST /files`` response."""
    body = _unwrap(data, what="upload response")
    url = body.get("url")
    if not isinstance(url, str) or not url:
        hint = error_message(body)
        raise UnexpectedResponse(
            "upload response has no url" + (f" (provider said: {hint})" if hint else "")
        )
    return url


def parse_images(data: Any) -> list[str]:
    """The urls of ``{"data": [{"url": ...}, ...]}`` (the Generate Image page), in order.

    A 2xx is billed: a reply without a usable url for every image is an
    :class:`UnexpectedResponse`, which the caller treats as an answer it could not read.
    """
    if not isinstance(data, Mapping):
        raise UnexpectedResponse(f"image response is not a JSON object (got {type(data).__name__})")
    items = data.get("data")
    if not isinstance(items, list) or not items:
        hint = error_message(data)
        raise UnexpectedResponse(
            "image response has no images" + (f" (provider said: {hint})" if hint else "")
        )
    urls: list[str] = []
    for number, item in enumerate(items, start=1):
        url = item.get("url") if isinstance(item, Mapping) else None
        if not isinstance(url, str) or not url.strip():
            kinds = sorted(item) if isinstance(item, Mapping) else type(item).__name__
            raise UnexpectedResponse(f"image {number} of {len(items)} has no url (got {kinds})")
        urls.append(url.strip())
    return urls


class RelayDanceDialect:
    """RelayDance's own format; request bodies are already in it and pass through."""

    name = "relaydance"
    default_base_url = "https://relaydance.com/v1"
    # OpenAI-compatible: it takes an ``Idempotency-Key`` header; whether it honours it is for
    # the operator to declare (RELAYDANCE_PROVIDER_IDEMPOTENT): its pages promise nothing.
    takes_idempotency_key = True

    def submit_endpoint(self) -> Endpoint:
        """``POST /video/generations``."""
        return Endpoint(SUBMIT_PATH)

    def task_endpoint(self, task_id: str) -> Endpoint:
        """``GET /video/generations/{task_id}``, the id quoted so it stays one segment."""
        return Endpoint(TASK_PATH.format(task_id=quote(task_id, safe="")))

    def upload_endpoint(self) -> Endpoint:
        """``POST /files``."""
        return Endpoint(UPLOAD_PATH)

    def images_endpoint(self) -> Endpoint:
        """``POST /images/generations``."""
        return Endpoint(IMAGES_PATH)

    def submit_body(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The body unchanged: RenderRequest.to_body() already speaks RelayDance."""
        return dict(body)

    def images_body(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The body unchanged: ImageRequest.to_body() already speaks RelayDance."""
        return dict(body)

    def parse_images(self, data: Any) -> list[str]:
        """See :func:`parse_images`."""
        return parse_images(data)

    def parse_submit(self, data: Any) -> RemoteTask:
        """See :func:`parse_submit`."""
        return parse_submit(data)

    def parse_task(self, data: Any, *, task_id: str | None = None) -> RemoteTask:
        """See :func:`parse_task`."""
        return parse_task(data, task_id=task_id)

    def parse_upload(self, data: Any) -> str:
        """See :func:`parse_upload`."""
        return parse_upload(data)

    def webhook_task_id(self, data: Any) -> Any:
        """``task_id`` of the task JSON (or of an OpenAI-style ``data`` envelope)."""
        if not isinstance(data, Mapping):
            return None
        value = data.get("task_id")
        inner = data.get("data")
        if value is None and isinstance(inner, Mapping):
            value = inner.get("task_id")
        return value

    def error_message(self, data: Any, *, status: int | None = None) -> str | None:
        """See :func:`error_message`; every status reads the same way."""
        return error_message(data)

    def is_own_error(self, data: Any) -> bool:
        """RelayDance's error body: ``{"error": {"message": "...", "type": "..."}}``."""
        return is_own_error(data)
