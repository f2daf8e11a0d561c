"""Settings come from ``RELAYDANCE_*`` variables and ``.env``; bad values name their variable.

Every test runs in an empty directory with every ``RELAYDANCE_*`` and ``REDIS_URL``
variable removed, so neither the machine's environment nor a stray ``.env`` leaks in.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.settings import Settings, SettingsError, env_name, get_settings, load_settings
from tests.settings_helpers import OTHER_SECRET, SECRET, empty_environment, settings_error


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    yield from empty_environment(monkeypatch, tmp_path)


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
