"""Settings come from ``RELAYDANCE_*`` variables and ``.env``; bad values name their variable.

Every test runs in an empty directory with every ``RELAYDANCE_*`` and ``REDIS_URL``
variable removed, so neither the machine's environment nor a stray ``.env`` leaks in.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.settings import Settings, SettingsError, env_name, get_settings, load_settings

SECRET = "sk-live-0123456789abcdef"
OTHER_SECRET = "sk-tenant-fedcba9876543210"
HOOK_SECRET = "whsec-very-private-42-YupXoteT7P2iKQbs6sDxUwyiwbezROdF"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in list(os.environ):
        if name.upper().startswith("RELAYDANCE_") or name.upper() == "REDIS_URL":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def settings_error(**env: str) -> str:
    """The SettingsError message for these variables (names given without the prefix)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        with pytest.raises(SettingsError) as info:
            load_settings()
    return str(info.value)


# Sources -----------------------------------------------------------------------------------


def test_nothing_set_gives_the_documented_defaults() -> None:
    settings = load_settings()
    assert settings.keys() == {}
    assert settings.base_url == "https://relaydance.com/v1"
    assert settings.redis_url is None
    assert settings.max_concurrency == 10


def test_variables_with_the_relaydance_prefix_set_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYDANCE_MAX_CONCURRENCY", "4")
    monkeypatch.setenv("RELAYDANCE_BASE_URL", "http://127.0.0.1:8000/v1/")
    monkeypatch.setenv("RELAYDANCE_ALLOW_LOCAL_URLS", "true")
    monkeypatch.setenv("MAX_CONCURRENCY", "99")  # no prefix: not ours
    settings = load_settings()
    assert settings.max_concurrency == 4
    assert settings.base_url == "http://127.0.0.1:8000/v1"
    assert settings.allow_local_urls is True


def test_api_key_becomes_the_default_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYDANCE_API_KEY", SECRET)
    settings = load_settings()
    assert list(settings.keys()) == ["default"]
    assert settings.key_for("default").get_secret_value() == SECRET


def test_api_keys_json_adds_aliases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYDANCE_API_KEY", SECRET)
    monkeypatch.setenv("RELAYDANCE_API_KEYS", f'{{"tenant-a": "{OTHER_SECRET}", "b_2": "sk-b"}}')
    settings = load_settings()
    assert sorted(settings.keys()) == ["b_2", "default", "tenant-a"]
    assert settings.key_for("tenant-a").get_secret_value() == OTHER_SECRET
    assert settings.key_for("default").get_secret_value() == SECRET


def test_a_default_alias_in_api_keys_wins_over_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYDANCE_API_KEY", SECRET)
    monkeypatch.setenv("RELAYDANCE_API_KEYS", f'{{"default": "{OTHER_SECRET}"}}')
    assert load_settings().key_for("default").get_secret_value() == OTHER_SECRET


def test_an_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYDANCE_API_KEY", "")
    monkeypatch.setenv("RELAYDANCE_POLL_FIRST_DELAY", "")
    monkeypatch.setenv("RELAYDANCE_API_KEYS", "")
    settings = load_settings()
    assert settings.keys() == {}
    assert settings.poll_first_delay is None


def test_keys_lose_surrounding_whitespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYDANCE_API_KEY", f"  {SECRET}\n")
    monkeypatch.setenv("RELAYDANCE_API_KEYS", f'{{"a": "{OTHER_SECRET}\\n"}}')
    settings = load_settings()
    assert settings.key_for("default").get_secret_value() == SECRET
    assert settings.key_for("a").get_secret_value() == OTHER_SECRET


def test_redis_url_is_read_from_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6390/1")
    assert load_settings().redis_url == "redis://127.0.0.1:6390/1"


def test_redis_url_is_read_from_relaydance_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYDANCE_REDIS_URL", "rediss://cache.internal:6380/0")
    assert load_settings().redis_url == "rediss://cache.internal:6380/0"


def test_relaydance_redis_url_wins_when_both_are_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("RELAYDANCE_REDIS_URL", "redis://127.0.0.1:2/0")
    assert load_settings().redis_url == "redis://127.0.0.1:2/0"


def test_overrides_beat_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYDANCE_MAX_CONCURRENCY", "4")
    settings = load_settings(max_concurrency=7, redis_url="redis://127.0.0.1:3/0")
    assert settings.max_concurrency == 7
    assert settings.redis_url == "redis://127.0.0.1:3/0"


def test_a_dotenv_file_in_the_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        f"RELAYDANCE_API_KEY={SECRET}\n"
        "RELAYDANCE_MAX_CONCURRENCY=3\n"
        'RELAYDANCE_KEY_CONCURRENCY={"default": 2}\n'
        "REDIS_URL=redis://127.0.0.1:6391/0\n"
        "UNRELATED=1\n"
    )
    settings = load_settings()
    assert settings.key_for("default").get_secret_value() == SECRET
    assert settings.max_concurrency == 3
    assert settings.concurrency_for("default") == 2
    assert settings.redis_url == "redis://127.0.0.1:6391/0"


def test_the_environment_beats_the_dotenv_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("RELAYDANCE_MAX_CONCURRENCY=3\n")
    monkeypatch.setenv("RELAYDANCE_MAX_CONCURRENCY", "5")
    assert load_settings().max_concurrency == 5


def test_get_settings_reads_once_until_the_cache_is_cleared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RELAYDANCE_MAX_CONCURRENCY", "4")
    first = get_settings()
    monkeypatch.setenv("RELAYDANCE_MAX_CONCURRENCY", "6")
    assert get_settings() is first
    get_settings.cache_clear()
    assert get_settings().max_concurrency == 6


# Refusals name the variable ----------------------------------------------------------------


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


# Secrets stay secret -----------------------------------------------------------------------


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


# Per-alias lookups -------------------------------------------------------------------------


def test_key_for_an_unknown_alias_lists_the_aliases_and_names_the_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RELAYDANCE_API_KEY", SECRET)
    monkeypatch.setenv("RELAYDANCE_API_KEYS", f'{{"tenant-a": "{OTHER_SECRET}"}}')
    with pytest.raises(SettingsError) as info:
        load_settings().key_for("tenant-b")
    message = str(info.value)
    assert "tenant-b" not in message  # an unknown alias may be a mistyped key: never echoed
    assert "configured aliases: default, tenant-a" in message
    assert "RELAYDANCE_API_KEY" in message
    assert "RELAYDANCE_API_KEYS" in message
    assert SECRET not in message
    assert OTHER_SECRET not in message


def test_key_for_with_no_keys_at_all_says_none_are_configured() -> None:
    with pytest.raises(SettingsError, match="configured aliases: none"):
        load_settings().key_for("default")


def test_concurrency_and_rate_overrides_apply_per_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYDANCE_MAX_CONCURRENCY", "8")
    monkeypatch.setenv("RELAYDANCE_REQUESTS_PER_SECOND", "5")
    monkeypatch.setenv("RELAYDANCE_KEY_CONCURRENCY", '{"tenant-a": 2}')
    monkeypatch.setenv("RELAYDANCE_KEY_REQUESTS_PER_SECOND", '{"tenant-b": 0.5}')
    settings = load_settings()
    assert settings.concurrency_for("tenant-a") == 2
    assert settings.concurrency_for("tenant-b") == 8
    assert settings.rate_for("tenant-b") == 0.5
    assert settings.rate_for("tenant-a") == 5.0


def test_overrides_can_be_given_as_mappings_in_code() -> None:
    settings = Settings(key_concurrency={"a": 3}, key_requests_per_second={"a": 1.5})
    assert (settings.concurrency_for("a"), settings.rate_for("a")) == (3, 1.5)


def test_env_name_maps_fields_to_variables() -> None:
    assert env_name("max_concurrency") == "RELAYDANCE_MAX_CONCURRENCY"
    assert env_name("api_keys") == "RELAYDANCE_API_KEYS"
    assert env_name("redis_url") == "REDIS_URL"


# Key routes: a provider per alias ----------------------------------------------------------


def test_an_alias_may_name_its_provider_and_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYDANCE_API_KEY", SECRET)
    monkeypatch.setenv(
        "RELAYDANCE_API_KEYS",
        json.dumps({
            "studio": OTHER_SECRET,
            "kin": {"key": "kin-key-1\n", "provider": "kinovi"},
            "kin-local": {"key": "kin-key-2", "provider": "kinovi",
                          "base_url": "http://127.0.0.1:8090/api/v1/"},
        }),
    )  # fmt: skip
    settings = load_settings()
    assert sorted(settings.keys()) == ["default", "kin", "kin-local", "studio"]
    assert settings.key_for("kin").get_secret_value() == "kin-key-1"
    routes = {a: (settings.provider_for(a), settings.base_url_for(a)) for a in settings.keys()}
    assert routes == {
        "default": ("relaydance", "https://relaydance.com/v1"),
        "studio": ("relaydance", "https://relaydance.com/v1"),
        "kin": ("kinovi", "https://kinovi.ai/api/v1"),
        "kin-local": ("kinovi", "http://127.0.0.1:8090/api/v1"),
    }
    assert "kin-key" not in repr(settings)


def test_bare_keys_follow_the_default_provider_and_its_base_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RELAYDANCE_DIALECT", "kinovi")
    monkeypatch.setenv("RELAYDANCE_BASE_URL", "http://127.0.0.1:9/api/v1")
    monkeypatch.setenv("RELAYDANCE_API_KEYS", json.dumps({"a": SECRET, "r": {
        "key": OTHER_SECRET, "provider": "relaydance"}}))  # fmt: skip
    settings = load_settings()
    assert (settings.provider_for("a"), settings.base_url_for("a")) == (
        "kinovi",
        "http://127.0.0.1:9/api/v1",
    )
    assert (settings.provider_for("r"), settings.base_url_for("r")) == (
        "relaydance",
        "https://relaydance.com/v1",
    )


def test_a_bad_route_names_the_alias_and_field_and_never_the_key() -> None:
    message = settings_error(
        RELAYDANCE_API_KEYS=json.dumps({
            "x": {"key": SECRET, "provider": "nope", "base_url": "ftp://h/v1", "colour": 1},
            "y": {"provider": "kinovi"},
        })
    )  # fmt: skip
    assert "alias 'x', provider: unknown provider 'nope'; use one of kinovi, relaydance" in message
    assert "alias 'x', base_url: must be an absolute http(s) URL" in message
    assert "alias 'x', colour" in message
    assert "alias 'y', key" in message
    assert SECRET not in message


def test_the_settings_route_to_the_providers_the_dialects_define() -> None:
    # One source: a provider's name, home and Idempotency-Key word are its dialect's.
    from worker.provider.dialects import get_dialect, known_dialects
    from worker.render.rules import provider_names

    assert known_dialects() == provider_names()
    for name in known_dialects():
        dialect = get_dialect(name)
        route = {"key": SECRET, "provider": name}
        settings = load_settings(api_keys={"a": route})
        assert settings.provider_for("a") == name
        assert settings.base_url_for("a") == dialect.default_base_url
        if dialect.takes_idempotency_key:
            declared = load_settings(api_keys={"a": {**route, "idempotent": True}})
            assert declared.idempotent_for("a") is True
        else:
            with pytest.raises(SettingsError, match="documents no Idempotency-Key"):
                load_settings(api_keys={"a": {**route, "idempotent": True}})


def test_no_two_parts_of_the_settings_name_a_validator_alike() -> None:
    # Composed by inheritance, a validator named like another part's would hide it.
    from pydantic import BaseModel

    parts = [
        base
        for base in Settings.__mro__[1:]
        if issubclass(base, BaseModel) and base.__module__.startswith(("config.", "worker."))
    ]
    assert len(parts) >= 7
    names = [
        name
        for part in parts
        for kind in ("field_validators", "model_validators")
        for name in getattr(part.__pydantic_decorators__, kind)
        if name in vars(part)
    ]
    assert sorted(names) == sorted(set(names))
    composed = Settings.__pydantic_decorators__
    assert set(names) <= set(composed.field_validators) | set(composed.model_validators)


def test_the_provider_package_reads_nothing_of_config() -> None:
    # config composes the provider's settings part: an import back would close a circle.
    from tests.unit.test_imports import import_graph

    wrong = sorted(
        f"{module} -> {target}"
        for module, targets in import_graph().items()
        if module.startswith("worker.provider")
        for target in targets
        if target.split(".")[0] == "config"
    )
    assert not wrong
