"""Bad settings are refused naming their variable, every problem at once, and never showing a key.

Every test runs in an empty directory with every ``RELAYDANCE_*`` and ``REDIS_URL``
variable removed, so neither the machine's environment nor a stray ``.env`` leaks in.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from config.settings import SettingsError, load_settings
from tests.settings_helpers import (
    HOOK_SECRET,
    OTHER_SECRET,
    SECRET,
    empty_environment,
    settings_error,
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    yield from empty_environment(monkeypatch, tmp_path)


def test_bad_json_in_api_keys_names_the_variable_and_not_the_keys() -> None:
    message = settings_error(RELAYDANCE_API_KEYS=f'{{"a": "{SECRET}", ')
    assert "RELAYDANCE_API_KEYS" in message
    assert "JSON object" in message
    assert SECRET not in message


def test_api_keys_that_are_not_an_object_name_the_variable() -> None:
    message = settings_error(RELAYDANCE_API_KEYS=f'["{SECRET}"]')
    assert "RELAYDANCE_API_KEYS" in message
    assert SECRET not in message


def test_an_alias_with_odd_characters_is_refused() -> None:
    message = settings_error(RELAYDANCE_API_KEYS=f'{{"tenant a!": "{SECRET}"}}')
    assert "RELAYDANCE_API_KEYS" in message
    assert "letters, digits, - or _" in message


def test_an_alias_with_an_empty_key_is_refused() -> None:
    message = settings_error(RELAYDANCE_API_KEYS='{"tenant-a": "  "}')
    assert "RELAYDANCE_API_KEYS" in message
    assert "'tenant-a' has an empty key" in message


@pytest.mark.parametrize("value", ["0", "abc", "-3", "100001"])
def test_a_bad_max_concurrency_names_the_variable(value: str) -> None:
    assert "RELAYDANCE_MAX_CONCURRENCY:" in settings_error(RELAYDANCE_MAX_CONCURRENCY=value)


def test_a_zero_per_alias_concurrency_names_the_variable_and_alias() -> None:
    message = settings_error(RELAYDANCE_KEY_CONCURRENCY='{"tenant-a": 0}')
    assert "RELAYDANCE_KEY_CONCURRENCY" in message
    assert "tenant-a" in message


def test_a_bad_per_alias_rate_names_the_variable() -> None:
    message = settings_error(RELAYDANCE_KEY_REQUESTS_PER_SECOND='{"a": -1}')
    assert "RELAYDANCE_KEY_REQUESTS_PER_SECOND" in message


def test_bad_json_in_key_concurrency_names_the_variable() -> None:
    assert "RELAYDANCE_KEY_CONCURRENCY" in settings_error(RELAYDANCE_KEY_CONCURRENCY="{a: 1}")


@pytest.mark.parametrize("value", ["ftp://x", "relaydance.com/v1", "https://", "http:///v1"])
def test_a_base_url_that_is_not_absolute_http_names_the_variable(value: str) -> None:
    message = settings_error(RELAYDANCE_BASE_URL=value)
    assert "RELAYDANCE_BASE_URL" in message
    assert "absolute http(s) URL" in message


@pytest.mark.parametrize("variable", ["REDIS_URL", "RELAYDANCE_REDIS_URL"])
def test_a_redis_url_that_is_not_redis_names_the_variable_not_the_password(variable: str) -> None:
    message = settings_error(**{variable: "http://user:hunter2@cache:6379/0"})
    assert f"{variable}:" in message
    assert "redis://" in message
    assert "hunter2" not in message


def test_poll_interval_min_above_max_names_both_variables() -> None:
    message = settings_error(RELAYDANCE_POLL_INTERVAL_MIN="40", RELAYDANCE_POLL_INTERVAL_MAX="30")
    assert "RELAYDANCE_POLL_INTERVAL_MIN" in message
    assert "RELAYDANCE_POLL_INTERVAL_MAX" in message


def test_a_webhook_base_url_without_a_secret_names_the_secret_variable() -> None:
    message = settings_error(RELAYDANCE_WEBHOOK_BASE_URL="https://hooks.example.com/rd")
    assert "RELAYDANCE_WEBHOOK_SECRET is required" in message


def test_a_webhook_base_url_with_a_secret_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYDANCE_WEBHOOK_BASE_URL", "https://hooks.example.com/rd/")
    monkeypatch.setenv("RELAYDANCE_WEBHOOK_SECRET", HOOK_SECRET)
    settings = load_settings()
    assert settings.webhook_base_url == "https://hooks.example.com/rd"
    assert settings.webhook_secret is not None
    assert settings.webhook_secret.get_secret_value() == HOOK_SECRET


def test_an_unknown_dialect_names_the_variable() -> None:
    assert "RELAYDANCE_DIALECT" in settings_error(RELAYDANCE_DIALECT="nope")


def test_every_bad_variable_is_reported_at_once() -> None:
    message = settings_error(
        RELAYDANCE_MAX_CONCURRENCY="0",
        RELAYDANCE_BASE_URL="ftp://x",
        RELAYDANCE_REQUESTS_PER_SECOND="fast",
    )
    for name in (
        "RELAYDANCE_MAX_CONCURRENCY",
        "RELAYDANCE_BASE_URL",
        "RELAYDANCE_REQUESTS_PER_SECOND",
    ):
        assert name in message


def test_a_bad_value_in_a_dotenv_file_names_the_variable(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("RELAYDANCE_API_KEYS={not json\n")
    with pytest.raises(SettingsError, match="RELAYDANCE_API_KEYS"):
        load_settings()


def test_settings_errors_are_value_errors() -> None:
    with pytest.raises(ValueError, match="RELAYDANCE_MAX_CONCURRENCY"):
        load_settings(max_concurrency=0)


def test_keys_never_appear_in_str_or_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYDANCE_API_KEY", SECRET)
    monkeypatch.setenv("RELAYDANCE_API_KEYS", f'{{"tenant-a": "{OTHER_SECRET}"}}')
    monkeypatch.setenv("RELAYDANCE_WEBHOOK_BASE_URL", "https://hooks.example.com/rd")
    monkeypatch.setenv("RELAYDANCE_WEBHOOK_SECRET", HOOK_SECRET)
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2@cache.internal:6379/0")
    settings = load_settings()
    for text in (str(settings), repr(settings), repr(settings.keys()), str(settings.keys())):
        for secret in (SECRET, OTHER_SECRET, HOOK_SECRET, "hunter2"):
            assert secret not in text
    assert "cache.internal:6379" in repr(settings)
    assert settings.redis_url == "redis://:hunter2@cache.internal:6379/0"  # usable as given


def test_keys_never_appear_in_settings_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYDANCE_API_KEY", SECRET)
    monkeypatch.setenv("RELAYDANCE_WEBHOOK_SECRET", HOOK_SECRET)
    monkeypatch.setenv("RELAYDANCE_API_KEYS", f'{{"tenant-a": "{OTHER_SECRET}", "b c": "x"}}')
    monkeypatch.setenv("RELAYDANCE_MAX_CONCURRENCY", "0")
    with pytest.raises(SettingsError) as info:
        load_settings()
    for secret in (SECRET, OTHER_SECRET, HOOK_SECRET):
        assert secret not in str(info.value)
        assert secret not in repr(info.value)
    assert info.value.__cause__ is None  # nothing chained that could carry the input
