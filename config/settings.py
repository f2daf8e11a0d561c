"""One source of configuration: environment variables prefixed ``RELAYDANCE_`` and ``.env``.

Each part of the fleet has its own settings model (:mod:`config.parts`, and the provider's
in :mod:`worker.provider.settings`, beside the dialects it routes to); :class:`Settings` is
all of them at once, read from the environment. A package that needs one part takes that
part. Keys are :class:`~pydantic.SecretStr`; call ``get_secret_value()`` only at the point
of use.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from pydantic import SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError

from config.errors import SettingsError
from config.parts.infra import REDIS_NAMES, InfraSettings
from config.parts.job import JobSettings
from config.parts.limits import LimitSettings
from config.parts.pricing import PricingSettings
from config.parts.storage import S3_SCHEME, StorageSettings
from config.parts.web import WebSettings
from worker.provider.settings import ProviderSettings

__all__ = [
    "ENV_PREFIX",
    "S3_SCHEME",
    "Settings",
    "SettingsError",
    "env_name",
    "get_settings",
    "load_settings",
]

ENV_PREFIX = "RELAYDANCE_"


def env_name(field: str) -> str:
    """The environment variable that sets a settings field."""
    if field == "redis_url":
        return "REDIS_URL"
    return ENV_PREFIX + field.upper()


class Settings(
    PricingSettings,
    WebSettings,
    JobSettings,
    LimitSettings,
    StorageSettings,
    InfraSettings,
    ProviderSettings,
    BaseSettings,
):
    """Every setting of the fleet, each part's at once. See the README's configuration table."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        # `RELAYDANCE_API_KEY=` in a .env means unset, not an empty key that fails later.
        env_ignore_empty=True,
    )

    # The JSON objects are NoDecode: this validator parses them, so malformed JSON is
    # reported like any other bad setting, naming its variable, instead of escaping as the
    # settings source's own exception. It runs before each part's own validators.
    @field_validator(
        "api_keys", "key_concurrency", "key_requests_per_second", "prices", mode="before"
    )
    @classmethod
    def _parse_json_object(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            if not value:
                return {}
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                # The position only: the text may hold keys.
                raise ValueError(
                    f'must be a JSON object, e.g. {{"alias": ...}} (invalid JSON at line '
                    f"{exc.lineno} column {exc.colno})"
                ) from None
        return value

    def key_for(self, alias: str) -> SecretStr:
        """The key of an alias; raises :class:`SettingsError` naming the variables to set."""
        try:
            return self.keys()[alias]
        except KeyError:
            known = ", ".join(sorted(self.keys())) or "none"
            raise SettingsError(
                f"no API key for the job's alias (configured aliases: {known}); set "
                f"RELAYDANCE_API_KEY for 'default' or add it to RELAYDANCE_API_KEYS"
            ) from None


def _variable(field: str) -> str:
    # Fields read through an alias (the Redis URL) report the alias itself as the location.
    if field.upper() in REDIS_NAMES or field.upper().startswith(ENV_PREFIX):
        return field.upper()
    return env_name(field)


def _format_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = err.get("loc") or ()
        # Pydantic's messages never carry the input value; ours never echo a secret.
        message = err["msg"].removeprefix("Value error, ")
        if len(loc) > 2:  # a field of an alias's object: say which alias and field
            message = f"alias {str(loc[1])!r}, {'.'.join(map(str, loc[2:]))}: {message}"
        elif len(loc) > 1:  # an entry of a JSON object: say which alias
            message = f"alias {str(loc[1])!r}: {message}"
        lines.append(f"{_variable(str(loc[0]))}: {message}" if loc else message)
    return "invalid settings:\n  " + "\n  ".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment, raising :class:`SettingsError` on bad values."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(_format_error(exc)) from None
    except SourceError as exc:
        # A value the settings source itself could not read; name the variable, not the value.
        found = re.search(r'field "(\w+)"', str(exc))
        name = _variable(found.group(1)) if found else "settings"
        raise SettingsError(f"invalid settings:\n  {name}: could not be read ({exc})") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
