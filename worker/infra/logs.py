"""Logging for every process of the fleet: secrets scrubbed from every line, optional JSON.

:class:`RedactingFilter` sits on handlers, not loggers: a logger's filters only see records
logged on that very logger, while a handler's filters see everything it is about to write,
including records propagated from libraries. It rewrites the record in place (message with
its arguments applied, exception and stack text), so every later handler and formatter
sees only the scrubbed text.

What is scrubbed: ``Bearer`` tokens and ``Basic`` credentials, ``sk-...`` key-like values,
the value of every ``SecretStr`` in the settings (API keys, the webhook secret, the UI
token and password, the metrics token, and any secret setting added later: they are
found by type, not by name), the cloud credentials in the environment
(``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``), ``key=value`` pairs named like
credentials, passwords in URLs, query strings of URLs (signed URLs carry their signature
there) and 64-hex path segments (webhook callback tokens, ``/hooks/<job id>/<token>``).
"""

from __future__ import annotations

import datetime as dt
import json as jsonlib
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from pydantic import BaseModel, SecretStr

__all__ = [
    "REDACTED",
    "JsonFormatter",
    "RedactingFilter",
    "add_redaction",
    "install_celery_logging",
    "redact",
    "secret_values",
    "setup_logging",
]

REDACTED = "<redacted>"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# httpx logs every request with its full URL (query string included) at INFO.
# httpx/httpcore log full URLs at INFO; botocore and urllib3 log signed requests at DEBUG.
QUIET_LOGGERS = ("httpx", "httpcore", "botocore", "boto3", "s3transfer", "urllib3")
# Cloud credentials boto3 reads from the environment: scrubbed like the configured keys.
CLOUD_SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
# Record attributes a caller may pass with ``extra=``; the JSON formatter keeps them.
EXTRA_FIELDS = ("job_id", "key", "state")
# A configured secret shorter than this is not replaced verbatim: a one-letter test key
# would otherwise blank out that letter on every line. Patterns still apply.
MIN_SECRET_LENGTH = 6

_BEARER = re.compile(r"(?i)\b(bearer\s+)(?!<redacted>)[A-Za-z0-9\-._~+/]+=*")
# An HTTP Basic credential (base64 of user:password): a digit, + or /, or a capital past
# the first letter, so that "basic auth" or "Basic Authentication" in prose is kept.
_BASIC = re.compile(
    r"\b([Bb]asic\s+)(?!<redacted>)(?=[A-Za-z0-9+/]*[0-9+/]|[A-Za-z0-9+/]+[A-Z])[A-Za-z0-9+/]{8,}=*"
)
_SK_KEY = re.compile(r"\bsk-[A-Za-z0-9][A-Za-z0-9_\-]{7,}")
_CREDENTIAL_PAIR = re.compile(
    r"(?i)\b((?:api[_-]?key|secret|password|passwd|token)[\"']?\s*[=:]\s*[\"']?)"
    r"(?!<redacted>)[^\s\"',;&)}\]]+"
)
_URL_PASSWORD = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@'\"<>]*:)[^\s/@'\"<>]+@")
_URL_QUERY = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.\-]*://[^\s?#'\"<>]*)\?(?!<redacted>)[^\s'\"<>]*")
# A bare path with a query, as in an access log line: "GET /hooks/x?sig=... HTTP/1.1".
_PATH_QUERY = re.compile(r"(?<![\w/:.\-])(/[^\s?#'\"<>]*)\?(?!<redacted>)[^\s'\"<>]*")
_HEX_TOKEN = re.compile(r"(?<=/)[0-9a-fA-F]{64}(?![0-9a-fA-F])")
_REPEATED = re.compile(r"(?:<redacted>){2,}")


def redact(text: str, *, secrets: Iterable[str] = ()) -> str:
    """``text`` with every secret it contains replaced by ``<redacted>``."""
    # Longest first, so a secret that contains another is removed whole.
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) >= MIN_SECRET_LENGTH:
            text = text.replace(secret, REDACTED)
    # URLs first: a whole query string goes at once, before the pair rule sees its parts.
    text = _URL_QUERY.sub(r"\1?" + REDACTED, text)
    text = _PATH_QUERY.sub(r"\1?" + REDACTED, text)
    text = _URL_PASSWORD.sub(r"\1" + REDACTED + "@", text)
    text = _BEARER.sub(r"\1" + REDACTED, text)
    text = _BASIC.sub(r"\1" + REDACTED, text)
    text = _SK_KEY.sub(REDACTED, text)
    text = _CREDENTIAL_PAIR.sub(r"\1" + REDACTED, text)
    text = _HEX_TOKEN.sub(REDACTED, text)
    return _REPEATED.sub(REDACTED, text)


def _configured_settings() -> Any:
    from config.settings import get_settings

    try:
        return get_settings()
    except Exception:  # an invalid configuration must not break logging about it
        return None


def secret_values(value: Any) -> Iterator[str]:
    """Every ``SecretStr`` value inside ``value`` (settings, their models, dicts, lists)."""
    if isinstance(value, SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from secret_values(getattr(value, name))
    elif isinstance(value, dict):
        for item in value.values():
            yield from secret_values(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from secret_values(item)


def _secrets_of(settings: Any) -> tuple[str, ...]:
    # By type, not by name: a secret setting added later is scrubbed without a change here.
    values = [*secret_values(settings), *(os.environ.get(n, "") for n in CLOUD_SECRET_ENV)]
    return tuple(v for v in values if v)


class RedactingFilter(logging.Filter):
    """Scrub secrets from a record's message, arguments, exception and stack text."""

    def __init__(self, name: str = "", *, secrets: Callable[[], Iterable[str]] | None = None):
        super().__init__(name)
        self._source = secrets
        self._settings: Any = None
        self._secrets: tuple[str, ...] = ()

    def secrets(self) -> tuple[str, ...]:
        """The literal secrets to remove: given ones, or the configured keys and secret."""
        if self._source is not None:
            return tuple(self._source())
        # Read lazily and re-read when the settings object changes (tests, reloads):
        # get_settings() is cached, so this is one dictionary lookup per record.
        settings = _configured_settings()
        if settings is not None and settings is not self._settings:
            self._settings, self._secrets = settings, _secrets_of(settings)
        return self._secrets

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``record`` in place; never drops it."""
        secrets = self.secrets()
        try:
            message = record.getMessage()
        except Exception:  # bad %-arguments: keep what there is, still scrubbed
            message = f"{record.msg!s} (unformattable arguments: {record.args!r})"
        record.msg, record.args = redact(message, secrets=secrets), ()
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, secrets=secrets)
        # Formatters that render exc_info themselves would bypass the scrubbed exc_text;
        # the standard Formatter and ours use exc_text when exc_info is gone.
        record.exc_info = None
        if record.stack_info:
            record.stack_info = redact(record.stack_info, secrets=secrets)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, and job/task fields if set."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a single line of JSON."""
        record.message = record.getMessage()
        created = dt.datetime.fromtimestamp(record.created, tz=dt.UTC)
        payload: dict[str, Any] = {
            "ts": created.isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.message,
        }
        for field in EXTRA_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                payload[field] = value
        payload.update(_current_task())
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            payload["exc"] = record.exc_text
        if record.stack_info:
            payload["stack"] = self.formatStack(record.stack_info)
        # ASCII only: a raw U+2028 in a prompt would split the line for some readers.
        return jsonlib.dumps(payload, default=str, ensure_ascii=True)


def _current_task() -> dict[str, str]:
    from celery._state import get_current_task

    task = get_current_task()
    if task is None or task.request is None or task.request.id is None:
        return {}
    return {"task_id": str(task.request.id), "task_name": str(task.name)}


_shared: RedactingFilter | None = None


def add_redaction(handler: logging.Handler) -> None:
    """Put the redacting filter on ``handler`` unless it already has one."""
    global _shared
    if any(isinstance(f, RedactingFilter) for f in handler.filters):
        return
    if _shared is None:
        _shared = RedactingFilter()
    handler.addFilter(_shared)


def _quiet_chatty_loggers() -> None:
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def setup_logging(*, json: bool, level: str = "INFO") -> None:
    """Configure the root logger: one stderr handler if none, redaction, text or JSON."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stderr))
    formatter = JsonFormatter() if json else logging.Formatter(TEXT_FORMAT)
    for handler in root.handlers:
        handler.setFormatter(formatter)
        add_redaction(handler)
    _quiet_chatty_loggers()


def _log_json_setting() -> bool:
    settings = _configured_settings()
    return bool(settings is not None and settings.log_json)


def _on_celery_logger_setup(logger: logging.Logger | None = None, **_: Any) -> None:
    if logger is None:
        return
    as_json = _log_json_setting()
    for handler in logger.handlers:
        add_redaction(handler)
        if as_json:
            handler.setFormatter(JsonFormatter())
    _quiet_chatty_loggers()


def install_celery_logging() -> None:
    """Have Celery's own log set-up (worker, beat) add redaction and, if set, JSON."""
    from celery.signals import after_setup_logger, after_setup_task_logger

    # dispatch_uid makes a second call a no-op; weak=False keeps the receiver alive.
    after_setup_logger.connect(
        _on_celery_logger_setup, weak=False, dispatch_uid="relaydance.logs.root"
    )
    after_setup_task_logger.connect(
        _on_celery_logger_setup, weak=False, dispatch_uid="relaydance.logs.task"
    )
