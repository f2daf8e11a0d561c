"""The Kinovi dialect (seed 003 and ``seeds/kinovi.md``): paths, bodies, tasks, webhooks, errors.

Kinovi serves the same Seedance 2.0 models as RelayDance under its own spelling::

    POST /jobs/createTask        {"model", "callBackUrl"?, "inputs": {urls?, audioUrls?,
                                  prompt?, duration, aspectRatio?, mode?, outputResolution?,
                                  upscaleResolution?}}  ->  {"taskId": "task_..."}
    GET  /jobs/recordInfo?taskId {"taskId", "model", "status", "creditsUsed", "output": [{url,
                                  width, height}], "error": {code, message}, "createTime", ...}
    webhook                      {"code": 200, "message": "success", "data": {... "state" ...}}
    error body                   {"message": "..."}

Request bodies arrive in the neutral (RelayDance) shape that ``RenderRequest.to_body`` makes
and are translated here: first/last frames become keyframe ``urls`` (Kinovi's default mode,
so no ``mode`` is sent), reference media become ``urls``/``audioUrls`` with ``mode:
"reference"``. Only what the request set is sent, so the documented example bodies come
out exactly. Statuses read from ``status`` (task record) or ``state`` (webhook).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker.errors import PermanentError, UnexpectedResponse
from worker.provider.dialects.base import Endpoint, RemoteTask, TaskStatus, unix_seconds

__all__ = [
    "USD_PER_CREDIT",
    "KinoviDialect",
    "NoImageEndpoint",
    "NoUploadEndpoint",
    "error_message",
    "is_own_error",
    "parse_task",
]

SUBMIT_PATH = "/jobs/createTask"
TASK_PATH = "/jobs/recordInfo"
USD_PER_CREDIT = 0.005  # seed 003: 200 credits = $1
MAX_MESSAGE_CHARS = 500

_STATUSES = {
    "waiting": TaskStatus.SUBMITTED,
    "generating": TaskStatus.RUNNING,
    "success": TaskStatus.SUCCEEDED,
    "fail": TaskStatus.FAILED,
}
_KNOWN_TASK_FIELDS = frozenset({"taskId", "status", "state", "output", "error", "creditsUsed"})
_MESSAGE_FIELDS = ("message", "msg", "error", "detail")
# Kinovi's 403 covers two different mistakes; the body alone may not say which.
_FORBIDDEN = "API access is not enabled for this key, or the task belongs to another key"


class NoUploadEndpoint(PermanentError):
    """Kinovi hosts no files: reference media must already be public URLs."""

    code = "uploads_unsupported"


class NoImageEndpoint(PermanentError):
    """Kinovi generates no images: stills come from a RelayDance key alias."""

    code = "images_unsupported"


def _short(text: str) -> str | None:
    text = " ".join(text.split())
    if not text:
        return None
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."


def error_message(data: Any, *, status: int | None = None) -> str | None:
    """The message of an error body (``{"message": ...}``), with what a 403 means."""
    found: str | None = None
    if isinstance(data, str):
        found = _short(data)
    elif isinstance(data, Mapping):
        for name in _MESSAGE_FIELDS:
            value = data.get(name)
            if isinstance(value, str):
                found = _short(value)
            elif isinstance(value, Mapping):
                found = error_message(value)
            if found:
                break
    if status == 403:
        return f"{_FORBIDDEN} ({found})" if found else _FORBIDDEN
    return found


def is_own_error(data: Any) -> bool:
    """Whether ``data`` is Kinovi's documented error body: an object with a message."""
    if not isinstance(data, Mapping):
        return False
    return any(isinstance(data.get(name), str) and data.get(name) for name in ("message", "msg"))


def _unwrap(data: Any, *, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise UnexpectedResponse(f"{what} is not a JSON object (got {type(data).__name__})")
    # The webhook (and some answers) wrap the task: {"code", "message", "data": {...}}.
    inner = data.get("data")
    if "taskId" not in data and isinstance(inner, Mapping):
        return inner
    return data


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    return str(value).strip() or None


def _failure(body: Mapping[str, Any]) -> str | None:
    error = body.get("error")
    if isinstance(error, Mapping):
        message = error_message(error)
        code = _text(error.get("code"))
        if message and code:
            return f"{message} (code {code})"
        return message or (f"code {code}" if code else None)
    return error_message(body) if isinstance(error, str) else None


def _cost(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return round(value * USD_PER_CREDIT, 6)


def parse_task(data: Any, *, task_id: str | None = None) -> RemoteTask:
    """A task from a ``recordInfo`` answer or a webhook envelope (``status`` or ``state``)."""
    body = _unwrap(data, what="task response")
    found = _text(body.get("taskId")) or task_id
    if found is None:
        hint = error_message(data)
        raise UnexpectedResponse(
            "task response has no taskId" + (f" (provider said: {hint})" if hint else "")
        )
    if task_id is not None and found != task_id:
        raise UnexpectedResponse(f"asked for task {task_id} but the response is for {found}")
    raw = body.get("status", body.get("state"))
    status = _STATUSES.get(raw.strip().lower(), TaskStatus.UNKNOWN) if isinstance(raw, str) else (
        TaskStatus.UNKNOWN
    )  # fmt: skip
    url = None
    output = body.get("output")
    if isinstance(output, list) and output and isinstance(output[0], Mapping):
        first = output[0].get("url")
        url = first if isinstance(first, str) and first else None
    error = _failure(body) if status is TaskStatus.FAILED or body.get("error") else None
    return RemoteTask(
        task_id=found,
        status=status,
        url=url,
        error=error,
        raw_status="" if raw is None else str(raw),
        extra={k: v for k, v in body.items() if k not in _KNOWN_TASK_FIELDS},
        actual_cost=_cost(body.get("creditsUsed")),
        created_at=unix_seconds(body.get("createTime"), millis=True),
    )


def parse_submit(data: Any) -> RemoteTask:
    """The task a ``createTask`` answer names: ``{"taskId": ...}``."""
    body = _unwrap(data, what="submit response")
    task_id = _text(body.get("taskId"))
    if task_id is None:
        hint = error_message(data)
        raise UnexpectedResponse(
            "submit response has no taskId" + (f" (provider said: {hint})" if hint else "")
        )
    return RemoteTask(task_id=task_id, status=TaskStatus.SUBMITTED)


def submit_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """Kinovi's ``createTask`` body for a neutral request body (see the module docstring)."""
    metadata: Mapping[str, Any] = body.get("metadata") or {}
    by_role: dict[str, list[str]] = {}
    for entry in metadata.get("content") or []:
        payload = entry.get(entry.get("type", ""), {})
        by_role.setdefault(str(entry.get("role")), []).append(str(payload.get("url")))
    reference = any(role.startswith("reference_") for role in by_role)
    if reference:
        urls = by_role.get("reference_image", []) + by_role.get("reference_video", [])
    else:
        urls = by_role.get("first_frame", []) + by_role.get("last_frame", [])
    inputs: dict[str, Any] = {}
    if urls:
        inputs["urls"] = urls
    if by_role.get("reference_audio"):
        inputs["audioUrls"] = by_role["reference_audio"]
    if body.get("prompt"):
        inputs["prompt"] = body["prompt"]
    inputs["duration"] = str(body.get("seconds", "5"))
    if metadata.get("ratio"):
        inputs["aspectRatio"] = metadata["ratio"]
    if reference:
        inputs["mode"] = "reference"  # keyframe is the default and is never spelled out
    if metadata.get("resolution"):
        inputs["outputResolution"] = metadata["resolution"]
    if metadata.get("upscale"):
        inputs["upscaleResolution"] = metadata["upscale"]
    out: dict[str, Any] = {"model": body["model"], "inputs": inputs}
    if metadata.get("callback_url"):
        out["callBackUrl"] = metadata["callback_url"]
    return out


class KinoviDialect:
    """Kinovi's ``/api/v1/jobs`` API."""

    name = "kinovi"
    default_base_url = "https://kinovi.ai/api/v1"
    # Kinovi documents no ``Idempotency-Key``: a repeated POST is a second, billed task.
    takes_idempotency_key = False

    def submit_endpoint(self) -> Endpoint:
        """``POST /jobs/createTask``."""
        return Endpoint(SUBMIT_PATH)

    def task_endpoint(self, task_id: str) -> Endpoint:
        """``GET /jobs/recordInfo?taskId=...``."""
        return Endpoint(TASK_PATH, {"taskId": task_id})

    def upload_endpoint(self) -> Endpoint:
        """Kinovi has none; validation refuses local files before this could be asked."""
        raise NoUploadEndpoint(
            "Kinovi has no upload endpoint; give reference media as public https URLs"
        )

    def images_endpoint(self) -> Endpoint:
        """Kinovi has none; validation refuses an image request for a Kinovi alias first."""
        raise NoImageEndpoint(
            "Kinovi generates no images; generate stills with a key alias whose provider "
            "is relaydance"
        )

    def submit_body(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """See :func:`submit_body`."""
        return submit_body(body)

    def images_body(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Never called: see :meth:`images_endpoint`."""
        raise NoImageEndpoint("Kinovi generates no images")

    def parse_images(self, data: Any) -> list[str]:
        """Never called: see :meth:`images_endpoint`."""
        raise NoImageEndpoint("Kinovi generates no images")

    def parse_submit(self, data: Any) -> RemoteTask:
        """See :func:`parse_submit`."""
        return parse_submit(data)

    def parse_task(self, data: Any, *, task_id: str | None = None) -> RemoteTask:
        """See :func:`parse_task`."""
        return parse_task(data, task_id=task_id)

    def parse_upload(self, data: Any) -> str:
        """Never called: see :meth:`upload_endpoint`."""
        raise NoUploadEndpoint("Kinovi has no upload endpoint")

    def webhook_task_id(self, data: Any) -> Any:
        """``data.taskId`` of the webhook envelope (or ``taskId`` of a bare task)."""
        if not isinstance(data, Mapping):
            return None
        inner = data.get("data")
        return inner.get("taskId") if isinstance(inner, Mapping) else data.get("taskId")

    def error_message(self, data: Any, *, status: int | None = None) -> str | None:
        """See :func:`error_message`."""
        return error_message(data, status=status)

    def is_own_error(self, data: Any) -> bool:
        """Kinovi's error body: ``{"message": "..."}`` (also inside its ``code`` envelope)."""
        return is_own_error(data)
