"""Every secret setting is scrubbed from every log line by its value: a canary per setting.

The settings that hold secrets are found by type (``SecretStr``, also inside the API key
routes), not from a list, so a secret setting added later gets its own canary row
without anyone remembering to add it. Each canary is a random string no pattern rule
would catch (no ``sk-`` prefix, no ``token=`` before it, no 64 hex digits), so only the
by-value rule can remove it.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import random
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from config.settings import Settings, env_name, get_settings
from worker.infra.logs import REDACTED, JsonFormatter, RedactingFilter


def _mentions_secret(annotation: Any) -> bool:
    return "SecretStr" in str(annotation) or "KeyRoute" in str(annotation)


SECRET_FIELDS = sorted(
    n for n, f in Settings.model_fields.items() if _mentions_secret(f.annotation)
)


def _canary(name: str) -> str:
    # Seeded by the field's name: the same canary on every run, different per field.
    raw = random.Random(name).randbytes(32)
    return "cnry" + base64.urlsafe_b64encode(raw).decode().rstrip("=").replace("-", "x")


def _environment(field: str, canary: str) -> dict[str, str]:
    if field == "api_keys":
        return {env_name(field): json.dumps({"tenant-a": {"key": canary, "provider": "kinovi"}})}
    extra = {"RELAYDANCE_UI_USER": "ops"} if field == "ui_password" else {}
    return {env_name(field): canary, **extra}


@pytest.fixture
def log_to_text() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("test.security.canary")
    logger.propagate, logger.level = False, logging.DEBUG
    logger.addHandler(handler)
    yield logger, stream
    logger.removeHandler(handler)


def test_the_secret_settings_are_found_by_type() -> None:
    # The list the canaries cover is derived, so it must hold at least the known ones.
    known = {"api_key", "api_keys", "webhook_secret", "ui_token", "ui_password", "metrics_token"}
    assert known <= set(SECRET_FIELDS)


@pytest.mark.parametrize("field", SECRET_FIELDS)
def test_a_canary_in_each_secret_setting_never_reaches_a_log_line(
    field: str, log_to_text: tuple[logging.Logger, io.StringIO], monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = _canary(field)
    for name, value in _environment(field, canary).items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    assert canary in json.dumps([s.get_secret_value() for s in _every_secret(get_settings())])
    logger, stream = log_to_text
    logger.info("configured value %s in use", canary)
    logger.warning("as text: value=%r", {"nested": [canary]})
    try:
        raise RuntimeError(f"failed with {canary}")
    except RuntimeError:
        logger.exception("job rdj_%s failed", "0" * 32)
    out = stream.getvalue()
    assert canary not in out
    assert out.count(REDACTED) >= 3
    assert "configured value" in out and "failed with" in out


def _every_secret(settings: Settings) -> list[SecretStr]:
    found = [v for v in settings.__dict__.values() if isinstance(v, SecretStr)]
    return found + [route.key for route in settings.api_keys.values()]


def test_an_http_basic_credential_is_scrubbed_but_prose_about_it_is_kept(
    log_to_text: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = log_to_text
    credential = base64.b64encode(b"ops:" + _canary("basic").encode()).decode()
    logger.info("headers {'Authorization': 'Basic %s'}", credential)
    logger.info("Flower needs basic auth; the page asks for Basic Authentication")
    out = stream.getvalue()
    assert credential not in out
    assert "basic auth" in out and "Basic Authentication" in out
