"""The provider part of the settings: the keys, where each alias's provider lives, HTTP limits.

A key alias is routed here: to its own provider and base URL, else the default provider's.
The provider names, their default URLs and whether they honour Idempotency-Key are the
dialects' own word (:mod:`worker.provider.dialects`), read here, never copied. This part is
composed into :class:`config.settings.Settings` with the others; it imports nothing of
``config``, so the client takes it without reaching above the provider package.
"""

from __future__ import annotations

from typing import Annotated, Any, Self
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import NoDecode

from worker.provider.dialects import get_dialect, known_dialects

__all__ = ["DEFAULT_ALIAS", "KeyRoute", "ProviderSettings"]

DEFAULT_ALIAS = "default"


def absolute_url(value: str) -> str:
    """``value`` without its trailing slash, if it is an absolute http(s) URL."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        shown = f"{parts.scheme}://{parts.hostname or ''}"
        raise ValueError(
            f"must be an absolute http(s) URL such as https://host/path, got {shown!r}"
        )
    return value.rstrip("/")


def _takes_idempotency_key(provider: str) -> bool:
    return get_dialect(provider).takes_idempotency_key


class KeyRoute(BaseModel):
    """One alias of ``RELAYDANCE_API_KEYS``: its key and, optionally, its provider and URL."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: SecretStr
    provider: str | None = None
    base_url: str | None = None
    # Declares (or denies) that this key's provider honours Idempotency-Key; unset:
    # RELAYDANCE_PROVIDER_IDEMPOTENT decides.
    idempotent: bool | None = None

    @field_validator("key")
    @classmethod
    def _strip(cls, value: SecretStr) -> SecretStr:
        # A key read from a file often ends in a newline, which no HTTP header may carry.
        return SecretStr(value.get_secret_value().strip())

    @field_validator("provider")
    @classmethod
    def _known(cls, value: str | None) -> str | None:
        if value is not None and value not in known_dialects():
            raise ValueError(
                f"unknown provider {value!r}; use one of {', '.join(known_dialects())}"
            )
        return value

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else absolute_url(value)


class ProviderSettings(BaseModel):
    """Provider access: keys by alias, the default provider, and the HTTP limits of a call."""

    api_key: SecretStr | None = Field(None, description="API key of the alias `default`.")
    api_keys: Annotated[dict[str, KeyRoute], NoDecode] = Field(
        default_factory=dict,
        description='JSON object alias -> key, e.g. {"tenant-a": "sk-..."}, or alias -> '
        '{"key": "...", "provider": "kinovi", "base_url": "..."} for another provider.',
    )
    base_url: str = Field(
        "https://relaydance.com/v1", description="Base URL of the default provider."
    )
    dialect: str = Field(
        "relaydance", description="Default provider: relaydance or kinovi (for bare keys)."
    )
    provider_idempotent: bool = Field(
        False,
        description="Declare that RelayDance honours Idempotency-Key: an ambiguous submission "
        "of a RelayDance key is then retried automatically (each retry counted as possibly "
        'billed). Per key: "idempotent" in RELAYDANCE_API_KEYS. Refused for Kinovi, which '
        "documents none. Off: it waits for the operator.",
    )
    http_connect_timeout: float = Field(10.0, gt=0, description="Connect timeout, seconds.")
    http_read_timeout: float = Field(60.0, gt=0, description="Read timeout, seconds.")
    http_call_deadline: float = Field(
        60.0, gt=0, le=600, description="Overall deadline of one provider call, seconds."
    )
    download_timeout: float = Field(600.0, gt=0, description="Overall download timeout, s.")
    download_max_bytes: int = Field(
        1024**3, gt=0, description="Largest accepted mp4 download, bytes."
    )
    allow_local_urls: bool = Field(
        False,
        description="Permit http and loopback/private addresses in provider URLs (local dev).",
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _bare_keys(cls, value: Any) -> Any:
        # A bare key (the usual case) is an alias of the default provider.
        if isinstance(value, dict):
            return {
                alias: {"key": entry} if isinstance(entry, str | SecretStr) else entry
                for alias, entry in value.items()
            }
        return value

    @field_validator("api_key", mode="before")
    @classmethod
    def _strip_key(cls, value: Any) -> Any:
        # A key read from a file often ends in a newline, which no HTTP header may carry.
        if isinstance(value, str):
            return value.strip() or None
        return value

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        return absolute_url(value)

    @field_validator("dialect")
    @classmethod
    def _check_dialect(cls, value: str) -> str:
        if value not in known_dialects():
            raise ValueError(f"unknown dialect; known: {', '.join(known_dialects())}")
        return value

    @model_validator(mode="after")
    def _check_keys(self) -> Self:
        if self.provider_idempotent and not _takes_idempotency_key(self.dialect):
            raise ValueError(
                f"RELAYDANCE_PROVIDER_IDEMPOTENT cannot be true while the default provider is "
                f"{self.dialect}: it documents no Idempotency-Key, so a repeated POST would "
                "create and bill a second task; unset it"
            )
        values = {key.get_secret_value().strip() for key in self.keys().values()}
        if any(alias in values for alias in self.keys()):
            # Never echoed: it is a key. An alias is stored, logged and shown everywhere.
            raise ValueError(
                "RELAYDANCE_API_KEYS: an alias is the same text as a configured key; name "
                'each key by a short alias (e.g. {"tenant-a": "sk-..."})'
            )
        for alias, route in self.api_keys.items():
            self._check_route(alias, route)
        return self

    def _check_route(self, alias: str, route: KeyRoute) -> None:
        provider = route.provider or self.dialect
        if route.idempotent and not _takes_idempotency_key(provider):
            raise ValueError(
                f"RELAYDANCE_API_KEYS: alias {alias!r} is a {provider} key, and {provider} "
                "documents no Idempotency-Key: a repeated POST would create and bill a "
                'second task; remove "idempotent" from it'
            )
        if not alias or not alias.replace("-", "").replace("_", "").isalnum():
            raise ValueError(
                f"RELAYDANCE_API_KEYS: alias {alias!r} must be letters, digits, - or _"
            )
        if not route.key.get_secret_value():
            raise ValueError(
                f"RELAYDANCE_API_KEYS: alias {alias!r} has an empty key; give its key or drop it"
            )

    # Routing ----------------------------------------------------------------------------------

    def keys(self) -> dict[str, SecretStr]:
        """Every configured key by alias; ``RELAYDANCE_API_KEY`` is the alias ``default``."""
        keys = {alias: route.key for alias, route in self.api_keys.items()}
        if self.api_key is not None:
            keys.setdefault(DEFAULT_ALIAS, self.api_key)
        return keys

    def provider_for(self, alias: str) -> str:
        """The provider an alias's jobs go to: its own, else the default (``dialect``)."""
        route = self.api_keys.get(alias)
        return (route.provider if route else None) or self.dialect

    def base_url_for(self, alias: str) -> str:
        """Where an alias's provider lives: its own base_url, else that provider's default."""
        route = self.api_keys.get(alias)
        if route is not None and route.base_url:
            return route.base_url
        provider = self.provider_for(alias)
        return self.base_url if provider == self.dialect else get_dialect(provider).default_base_url

    def idempotent_for(self, alias: str) -> bool:
        """Whether an ambiguous submission of the alias may be retried with the same
        Idempotency-Key: its own declaration, else the global one, never for a provider
        that documents none."""
        route = self.api_keys.get(alias)
        if not _takes_idempotency_key(self.provider_for(alias)):
            return False
        if route is not None and route.idempotent is not None:
            return route.idempotent
        return self.provider_idempotent
