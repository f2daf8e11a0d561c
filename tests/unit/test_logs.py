"""Every process scrubs secrets from its logs, and can log one JSON object per line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from celery.signals import after_setup_logger, after_setup_task_logger

from config.settings import get_settings
from tests.log_canaries import CANARY_KEY, CANARY_SECRET, JOB, LEAKS, TOKEN, isolated_root
from worker.infra.logs import (
    REDACTED,
    JsonFormatter,
    RedactingFilter,
    add_redaction,
    install_celery_logging,
    redact,
    setup_logging,
)


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Settings with a canary API key and webhook secret, read afresh."""
    monkeypatch.setenv("RELAYDANCE_API_KEYS", json.dumps({"tenant-a": CANARY_KEY}))
    monkeypatch.setenv("RELAYDANCE_WEBHOOK_SECRET", CANARY_SECRET)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A private logger writing to a string through a handler with the filter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("test.logs.captured")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield logger, stream
    logger.removeHandler(handler)


@pytest.mark.usefixtures("configured")
@pytest.mark.parametrize("kind", sorted(LEAKS))
def test_a_secret_in_the_message_is_redacted(
    kind: str, captured: tuple[logging.Logger, io.StringIO]
) -> None:
    logger, stream = captured
    secret, text, kept = LEAKS[kind]
    logger.info(text)
    out = stream.getvalue()
    assert secret not in out
    assert REDACTED in out
    assert kept in out


@pytest.mark.usefixtures("configured")
@pytest.mark.parametrize("kind", sorted(LEAKS))
def test_a_secret_in_the_arguments_is_redacted(
    kind: str, captured: tuple[logging.Logger, io.StringIO]
) -> None:
    logger, stream = captured
    secret, text, kept = LEAKS[kind]
    logger.warning("job %s: %s", JOB, text)
    out = stream.getvalue()
    assert secret not in out
    assert f"job {JOB}: " in out
    assert kept in out


@pytest.mark.usefixtures("configured")
@pytest.mark.parametrize("kind", sorted(LEAKS))
def test_a_secret_in_an_exception_traceback_is_redacted(
    kind: str, captured: tuple[logging.Logger, io.StringIO]
) -> None:
    logger, stream = captured
    secret, text, _ = LEAKS[kind]
    try:
        raise RuntimeError(text)
    except RuntimeError:
        logger.exception("step failed")
    out = stream.getvalue()
    assert "Traceback" in out
    assert "RuntimeError" in out
    assert secret not in out


def test_a_secret_in_stack_info_is_redacted(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured

    def emit() -> None:
        logger.info("with stack", stack_info=True)  # Bearer stack-token-5150

    emit()
    out = stream.getvalue()
    assert "Stack (most recent call last)" in out
    assert "stack-token-5150" not in out
    assert f"Bearer {REDACTED}" in out


def test_keys_are_read_from_the_settings_lazily_and_re_read_when_they_change(
    monkeypatch: pytest.MonkeyPatch, captured: tuple[logging.Logger, io.StringIO]
) -> None:
    logger, stream = captured
    get_settings.cache_clear()
    monkeypatch.setenv("RELAYDANCE_API_KEY", "first-canary-value-1")
    logger.info("a first-canary-value-1")
    get_settings.cache_clear()
    monkeypatch.setenv("RELAYDANCE_API_KEY", "second-canary-value-2")
    logger.info("b second-canary-value-2")
    get_settings.cache_clear()
    out = stream.getvalue()
    assert "first-canary-value-1" not in out
    assert "second-canary-value-2" not in out
    assert f"a {REDACTED}" in out
    assert f"b {REDACTED}" in out


def test_invalid_settings_do_not_break_logging(
    monkeypatch: pytest.MonkeyPatch, captured: tuple[logging.Logger, io.StringIO]
) -> None:
    logger, stream = captured
    monkeypatch.setenv("RELAYDANCE_MAX_CONCURRENCY", "not a number")
    get_settings.cache_clear()
    try:
        logger.error("still logged with Bearer abc.def")
    finally:
        monkeypatch.delenv("RELAYDANCE_MAX_CONCURRENCY")
        get_settings.cache_clear()
    assert stream.getvalue() == f"ERROR still logged with Bearer {REDACTED}\n"


def test_unformattable_arguments_are_kept_and_scrubbed(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    logger.info("two %s %s but one", "Bearer xyz123")
    out = stream.getvalue()
    assert "xyz123" not in out
    assert "two %s %s but one" in out


def test_redaction_is_idempotent_across_two_handlers() -> None:
    secret, text, _ = LEAKS["signed url query"]
    streams = [io.StringIO(), io.StringIO()]
    logger = logging.getLogger("test.logs.two")
    logger.propagate = False
    handlers = [logging.StreamHandler(s) for s in streams]
    for handler in handlers:
        handler.addFilter(RedactingFilter(secrets=lambda: ()))
        logger.addHandler(handler)
    try:
        logger.warning(text)
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
    assert streams[0].getvalue() == streams[1].getvalue()
    assert streams[0].getvalue().count(REDACTED) == 1
    assert secret not in streams[1].getvalue()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("redis://:hunter22@redis:6379/0", f"redis://:{REDACTED}@redis:6379/0"),
        ("rediss://u:pw9@r:6380/0?ssl_cert_reqs=x", f"rediss://u:{REDACTED}@r:6380/0?{REDACTED}"),
        ("https://h/p?k=canary-value-77 now", f"https://h/p?{REDACTED} now"),
        ('GET /hooks/j/x?sig=abc HTTP/1.1" 200', f'GET /hooks/j/x?{REDACTED} HTTP/1.1" 200'),
        ('{"api_key": "abc123"}', f'{{"api_key": "{REDACTED}"}}'),
        ("job rdj_1 key=default state=submitted", "job rdj_1 key=default state=submitted"),
        ("sha256 " + "f" * 64 + " saved", "sha256 " + "f" * 64 + " saved"),
        ("task-12345678 and disk-usage", "task-12345678 and disk-usage"),
    ],
)
def test_redact_handles_other_credential_shapes_and_leaves_plain_text(
    text: str, expected: str
) -> None:
    assert redact(text, secrets=["canary-value-77"]) == expected


def test_short_configured_secrets_are_not_replaced_verbatim() -> None:
    assert redact("a b c", secrets=["b"]) == "a b c"


def test_json_formatter_writes_one_valid_object_per_line() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter(secrets=lambda: ()))
    logger = logging.getLogger("test.logs.json")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        logger.info(
            "job %s state %s", JOB, "done", extra={"job_id": JOB, "key": "default", "state": "done"}
        )
        logger.info("multi\nline \u2028 prompt \u00e9 with Bearer abc")
        try:
            raise ValueError(f"bad url https://x.example/a?sig={TOKEN}")
        except ValueError:
            logger.exception("boom")
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    records = [json.loads(line) for line in lines]
    first, second, third = records
    assert first["message"] == f"job {JOB} state done"
    assert (first["job_id"], first["key"], first["state"]) == (JOB, "default", "done")
    assert first["level"] == "INFO"
    assert first["logger"] == "test.logs.json"
    assert first["ts"].endswith("+00:00")
    assert second["message"] == f"multi\nline \u2028 prompt \u00e9 with Bearer {REDACTED}"
    assert "job_id" not in second
    assert "Traceback" in third["exc"]
    assert TOKEN not in lines[2]


def test_setup_logging_installs_redaction_on_every_root_handler_and_quiets_httpx() -> None:
    stream = io.StringIO()
    with isolated_root() as root:
        root.handlers[:] = [logging.StreamHandler(stream), logging.StreamHandler(io.StringIO())]
        logging.getLogger("httpx").setLevel(logging.NOTSET)
        setup_logging(json=True, level="debug")
        logging.getLogger("some.library").debug("fetching https://a.example/b?token=zzz")
        logging.getLogger("httpx").info("HTTP Request: GET https://a.example/b?token=zzz")
        assert root.level == logging.DEBUG
        assert all(any(isinstance(f, RedactingFilter) for f in h.filters) for h in root.handlers)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1  # the httpx line is below WARNING
    assert json.loads(lines[0])["message"] == f"fetching https://a.example/b?{REDACTED}"


def test_setup_logging_adds_a_handler_when_there_is_none_and_is_repeatable() -> None:
    with isolated_root() as root:
        setup_logging(json=False)
        setup_logging(json=False)
        handlers = root.handlers[:]
        quiet = logging.getLogger("httpcore").level
    assert len(handlers) == 1
    assert len(handlers[0].filters) == 1
    assert quiet == logging.WARNING


def test_celery_log_setup_gets_redaction_and_json_when_the_setting_asks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RELAYDANCE_LOG_JSON", "true")
    get_settings.cache_clear()
    install_celery_logging()
    install_celery_logging()  # a second call connects nothing twice
    root_like = logging.getLogger("test.logs.celery.root")
    task_like = logging.getLogger("test.logs.celery.task")
    streams = {}
    for logger in (root_like, task_like):
        streams[logger.name] = io.StringIO()
        logger.handlers[:] = [logging.StreamHandler(streams[logger.name])]
        logger.propagate = False
    try:
        after_setup_logger.send(sender=None, logger=root_like, loglevel=logging.INFO)
        after_setup_task_logger.send(sender=None, logger=task_like, loglevel=logging.INFO)
        root_like.warning("worker using Bearer abcdef")
        task_like.warning("task got https://c.example/v.mp4?sig=1")
    finally:
        get_settings.cache_clear()
    for logger in (root_like, task_like):
        (handler,) = logger.handlers
        assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
        assert isinstance(handler.formatter, JsonFormatter)
        logger.handlers[:] = []
    assert json.loads(streams[root_like.name].getvalue())["message"] == (
        f"worker using Bearer {REDACTED}"
    )
    assert json.loads(streams[task_like.name].getvalue())["message"] == (
        f"task got https://c.example/v.mp4?{REDACTED}"
    )


def test_celery_log_setup_keeps_celery_formatters_without_the_json_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RELAYDANCE_LOG_JSON", raising=False)
    get_settings.cache_clear()
    install_celery_logging()
    logger = logging.getLogger("test.logs.celery.text")
    handler = logging.StreamHandler(io.StringIO())
    formatter = logging.Formatter("%(message)s")
    handler.setFormatter(formatter)
    logger.handlers[:] = [handler]
    try:
        after_setup_logger.send(sender=None, logger=logger, loglevel=logging.INFO)
    finally:
        get_settings.cache_clear()
        logger.handlers[:] = []
    assert handler.formatter is formatter
    assert any(isinstance(f, RedactingFilter) for f in handler.filters)


def test_add_redaction_does_not_stack_filters() -> None:
    handler = logging.StreamHandler(io.StringIO())
    add_redaction(handler)
    add_redaction(handler)
    assert len(handler.filters) == 1
