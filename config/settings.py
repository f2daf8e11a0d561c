"""One source of configuration: environment variables prefixed ``RELAYDANCE_`` and ``.env``.

Keys are :class:`~pydantic.SecretStr`; call ``get_secret_value()`` only at the point of use.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError

from config.secret_strength import weakness

__all__ = [
    "ENV_PREFIX",
    "PROVIDERS",
    "KeyRoute",
    "Settings",
    "SettingsError",
    "env_name",
    "get_settings",
    "load_settings",
]

ENV_PREFIX = "RELAYDANCE_"
DEFAULT_ALIAS = "default"
# Provider names and where each lives by default; worker.provider.dialects has one dialect per name
# (a test keeps the two lists equal: config never imports worker).
PROVIDERS: dict[str, str] = {
    "kinovi": "https://kinovi.ai/api/v1",
    "relaydance": "https://relaydance.com/v1",
}
# Providers whose API takes no Idempotency-Key (Kinovi documents none): a repeated POST
# creates, and bills, a second task. No operator may declare them idempotent (a test keeps
# this equal to the dialects' own word).
WITHOUT_IDEMPOTENCY = frozenset({"kinovi"})
REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+socket", "sentinel")
_REDIS_NAMES = ("RELAYDANCE_REDIS_URL", "REDIS_URL")

MIB = 1 << 20
S3_SCHEME = "s3://"
ADDRESSING_STYLES = ("auto", "path", "virtual")
# S3's bucket naming rules (the common subset every S3-compatible store accepts).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")

# What each secret setting guards, for the message refusing a weak one.
_GUARDS = {
    "webhook_secret": "sign callback URLs",
    "metrics_token": "guard /metrics",
    "ui_token": "guard the jobs page",
    "ui_password": "guard the jobs page",
}

Concurrency = Annotated[int, Field(ge=1, le=100_000)]
Rate = Annotated[float, Field(gt=0, le=10000)]


class SettingsError(ValueError):
    """Invalid configuration; the message names each environment variable and the fix."""


def env_name(field: str) -> str:
    """The environment variable that sets a settings field."""
    if field == "redis_url":
        return "REDIS_URL"
    return ENV_PREFIX + field.upper()


def _absolute_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        shown = f"{parts.scheme}://{parts.hostname or ''}"
        raise ValueError(
            f"must be an absolute http(s) URL such as https://host/path, got {shown!r}"
        )
    return value.rstrip("/")


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
        if value is not None and value not in PROVIDERS:
            raise ValueError(
                f"unknown provider {value!r}; use one of {', '.join(sorted(PROVIDERS))}"
            )
        return value

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _absolute_url(value)


class Settings(BaseSettings):
    """Every setting of the fleet. See the README's configuration table."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        # `RELAYDANCE_API_KEY=` in a .env means unset, not an empty key that fails later.
        env_ignore_empty=True,
    )

    # The JSON objects below are NoDecode: our validator parses them, so malformed JSON is
    # reported like any other bad setting, naming its variable, instead of escaping as the
    # settings source's own exception.

    # Provider access.
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

    # Redis (broker, result store, job records, limits).
    redis_url: str | None = Field(
        None,
        validation_alias=AliasChoices("RELAYDANCE_REDIS_URL", "REDIS_URL"),
        description="Redis URL; unset means an embedded redis-server for `relaydance dev`.",
    )
    redis_sentinel_master: str | None = Field(
        None, description="Master name when REDIS_URL lists sentinels (sentinel://...;...)."
    )
    redis_min_replicas: int | None = Field(
        None,
        ge=0,
        le=16,
        description="Redis replicas that must confirm a submission's claim (WAIT) before its "
        "POST leaves, and every write a payment depends on; unset: the replicas connected at "
        "start, at most 1. 0 turns failover safety off (a failover may then pay twice); more "
        "than stay connected after a failover stops submissions until one is back.",
    )
    redis_wait_ms: int = Field(
        500,
        ge=1,
        le=4000,  # below the Redis client's 5 s socket timeout
        description="How long such a write waits for its replicas, ms: longer rides out a "
        "slow replica, shorter frees a worker sooner when one is gone; a claim not confirmed "
        "in time is not sent (the job waits in line, unbilled).",
    )
    output_dir: Path = Field(
        Path("./renders"),
        description="Where finished mp4 files go, unless RELAYDANCE_OUTPUT names a bucket; "
        "then the worker's local working directory.",
    )

    media_dirs: str | None = Field(
        None,
        description="Absolute directories local media files may come from, separated by "
        f"{os.pathsep!r}; the producer and the workers must share it. Unset: no local file "
        "is taken (URLs only).",
    )

    output_mode: str | None = Field(
        None,
        description="Permissions of clips and manifests in a local output directory, in octal "
        "(e.g. 0640); unset: 0666 less the worker's umask, as cp does.",
    )

    # Output storage: a local directory (the default) or an S3-compatible bucket.
    # Credentials are never settings: boto3 reads AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/
    # AWS_SESSION_TOKEN or AWS_PROFILE itself, so they cannot reach a record or a repr.
    output: str | None = Field(
        None,
        validation_alias=AliasChoices("RELAYDANCE_OUTPUT", "RELAYDANCE_OUTPUT_URL"),
        description="Where finished clips go: a local directory or s3://bucket/prefix "
        "(also RELAYDANCE_OUTPUT_URL); unset: RELAYDANCE_OUTPUT_DIR.",
    )
    s3_endpoint_url: str | None = Field(
        None,
        description="S3 API endpoint (R2, MinIO, GCS...); unset: AWS, or AWS_ENDPOINT_URL_S3.",
    )
    s3_region: str | None = Field(
        None, description="Region of the bucket; unset: AWS_REGION or the profile's region."
    )
    s3_addressing_style: str = Field(
        "auto", description="S3 URL style: auto, path (most MinIO setups) or virtual."
    )
    s3_part_size: int = Field(
        8 * MIB,
        ge=5 * MIB,
        le=512 * MIB,
        description="Multipart upload part size, bytes: about the memory one upload holds.",
    )
    s3_presign_seconds: int = Field(
        3600, ge=1, le=7 * 24 * 3600, description="Lifetime of presigned clip URLs, s."
    )
    storage_retry_interval: float = Field(
        60.0, gt=0, description="When the output refuses a clip, try its delivery again this often."
    )
    storage_retry_seconds: float = Field(
        6 * 3600.0,
        gt=0,
        description="Keep retrying a refused delivery this long, then fail the job.",
    )

    # Limits per key alias.
    max_concurrency: int = Field(10, ge=1, le=100_000, description="Tasks in flight per key.")
    key_concurrency: Annotated[dict[str, Concurrency], NoDecode] = Field(
        default_factory=dict, description='Per-alias overrides, JSON, e.g. {"tenant-a": 4}.'
    )
    requests_per_second: float = Field(
        20.0, gt=0, le=10000, description="HTTP requests per second per key (all calls)."
    )
    key_requests_per_second: Annotated[dict[str, Rate], NoDecode] = Field(
        default_factory=dict, description="Per-alias request-rate overrides, JSON."
    )
    submit_unknown_hold_seconds: float = Field(
        900.0,
        gt=0,
        description="A job whose submission may have reached the provider keeps its slot this "
        "long (its task, if it exists, is generating); then the operator decides.",
    )
    pause_probe_seconds: float = Field(
        300.0,
        gt=0,
        le=24 * 3600,
        description="A key paused by its account (401, 402, a 403 for balance, access or a "
        "model) tries one real job this often, and an open provider breaker probes at most "
        "this far apart; a success resumes at once.",
    )
    breaker_failures: int = Field(
        5,
        ge=1,
        le=1000,
        description="Consecutive 5xx replies, connection failures or timeouts on one "
        "provider URL that open its breaker: submissions stop, polls back off, until a "
        "probe succeeds.",
    )
    on_alert: str | None = Field(
        None,
        description="Celery task name sent {kind, alias, provider, reason, since, state} when "
        "a key pauses, a provider breaker opens or the sweep stops (and hourly while it "
        "lasts, and when it ends).",
    )
    provider_idempotent: bool = Field(
        False,
        description="Declare that RelayDance honours Idempotency-Key: an ambiguous submission "
        "of a RelayDance key is then retried automatically (each retry counted as possibly "
        'billed). Per key: "idempotent" in RELAYDANCE_API_KEYS. Refused for Kinovi, which '
        "documents none. Off: it waits for the operator.",
    )

    # Polling.
    poll_first_delay: float | None = Field(
        None, ge=0, description="First poll delay in seconds; unset means learned per model."
    )
    poll_interval_min: float = Field(2.0, gt=0, description="Shortest interval between polls.")
    poll_interval_max: float = Field(30.0, gt=0, description="Longest interval between polls.")
    poll_deadline_seconds: float = Field(
        3600.0, gt=0, description="A job not finished remotely this long after submit fails."
    )
    sweep_interval_seconds: float = Field(20.0, gt=0, description="How often the sweeper runs.")
    sweep_grace_seconds: float = Field(
        20.0, ge=0, description="A step this long overdue is resumed by the sweeper."
    )
    step_grace_seconds: float = Field(
        90.0,
        gt=0,
        description="How long a claimed step (after its provider call's deadline) may run "
        "before the sweeper takes the job over.",
    )

    # HTTP.
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

    # Webhooks.
    webhook_base_url: str | None = Field(
        None, description="Public base URL of the `web` process, e.g. https://host/hooks."
    )
    webhook_secret: SecretStr | None = Field(
        None,
        description="Secret for webhook URL tokens; required with a webhook base URL. At "
        "least 128 bits, like every secret here: `secrets.token_urlsafe(32)` makes one.",
    )
    webhook_safety_poll_seconds: float = Field(
        600.0, gt=0, description="With webhooks on, the first safety poll comes this late."
    )
    webhook_refetch_seconds: float = Field(
        2.0,
        gt=0,
        le=60,
        description="Webhooks re-fetch a job's task at most once this often (more deliveries "
        "in between are folded into one later re-fetch), so replays cannot spend the key's rate.",
    )
    webhook_self_check: bool = Field(
        True,
        description="Workers GET <webhook base URL>/healthz at start and log loudly if it "
        "fails; turn off where workers cannot reach the public URL.",
    )

    # The jobs page (served by `relaydance web` under its prefix).
    ui_prefix: str = Field("/ui", description="Path prefix of the jobs page; empty turns it off.")
    ui_token: SecretStr | None = Field(
        None,
        description="Token that opens the jobs page (sign-in form or Bearer header); at least "
        "128 bits.",
    )
    ui_user: str | None = Field(
        None, description="User of the jobs page (the sign-in form or HTTP Basic)."
    )
    ui_password: SecretStr | None = Field(
        None,
        description="Password of the jobs page (with RELAYDANCE_UI_USER; the sign-in form or "
        "HTTP Basic); at least 128 bits.",
    )
    trusted_proxies: str = Field(
        "127.0.0.1",
        description="Reverse proxies `relaydance web` believes about the client's address and "
        "scheme (X-Forwarded-For, X-Forwarded-Proto; uvicorn's --forwarded-allow-ips): "
        "addresses or networks, comma-separated, or *. Set it to your TLS proxy's so the jobs "
        "page knows https (Secure cookie, HSTS) and whom to throttle.",
    )

    # Jobs and tasks.
    job_retention_seconds: int = Field(
        7 * 24 * 3600, gt=0, description="Finished jobs expire after this long."
    )
    task_soft_time_limit: float = Field(
        120.0, gt=0, description="Soft time limit of every task except download, s."
    )
    max_transient_retries: int = Field(
        8,
        ge=0,
        description="Retries of a step after transient errors before it fails, while the "
        "provider answers other calls well; during an outage the job waits instead.",
    )
    log_json: bool = Field(False, description="Log one JSON object per line.")
    metrics_bind: str = Field(
        "127.0.0.1",
        description="Address of the `web` process's own /metrics listener; loopback keeps "
        "job counts, key aliases and spend off the public receiver.",
    )
    metrics_port: int = Field(
        9108, ge=0, le=65535, description="Port of the /metrics listener; 0 turns it off."
    )
    metrics_token: SecretStr | None = Field(
        None,
        description="With it, the public receiver also serves /metrics, to requests with "
        "`Authorization: Bearer <token>` only; without it, the receiver has no /metrics. At least "
        "128 bits.",
    )
    task_events: bool = Field(
        True, description="Workers send task events (Flower needs them; they cost CPU)."
    )
    time_scale: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Multiplies the catalogue's expected generation times (first-poll "
        "priors), to run a simulation on a faster clock; 1 in production.",
    )
    prices: Annotated[dict[str, Any], NoDecode] = Field(
        default_factory=dict,
        description="Price overrides, JSON: model -> USD per second, or "
        '{"usd_per_second" | "credits_per_second": n, "usd_per_credit": x, '
        '"resolutions": {"1080p": 1.5}}.',
    )
    image_default_price: float = Field(
        0.10,
        ge=0,
        le=100,
        description="USD per image counted against budgets for an image model with no price "
        "(RelayDance publishes none), unless RELAYDANCE_PRICES names the model.",
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _bare_keys(cls, value: Any) -> Any:
        # Runs after the JSON parse below (before-validators run last-defined first).
        # A bare key (the usual case) is an alias of the default provider.
        if isinstance(value, dict):
            return {
                alias: {"key": entry} if isinstance(entry, str | SecretStr) else entry
                for alias, entry in value.items()
            }
        return value

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

    @field_validator(
        "api_key", "webhook_secret", "metrics_token", "ui_token", "ui_password", mode="before"
    )
    @classmethod
    def _strip_secret(cls, value: Any) -> Any:
        # A key read from a file often ends in a newline, which no HTTP header may carry.
        if isinstance(value, str):
            return value.strip() or None
        return value

    @field_validator(*_GUARDS)
    @classmethod
    def _strong_enough(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        # Guessable secrets open the page, /metrics, or (offline, from one captured
        # callback URL) every job's webhook: each needs 128 bits (config/secret_strength.py).
        if value is not None and info.field_name is not None:
            problem = weakness(value.get_secret_value(), purpose=_GUARDS[info.field_name])
            if problem is not None:
                raise ValueError(problem)
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: str) -> str:
        items = [item.strip() for item in value.split(",") if item.strip()]
        for item in items:
            if item == "*":
                continue
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"{item!r} is not an address or network; write e.g. 10.0.0.5, "
                    "172.16.0.0/12 or * (comma-separated)"
                ) from None
        return ",".join(items)

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        scheme = urlsplit(value).scheme
        # The URL itself is never echoed: it may carry the Redis password.
        if scheme not in REDIS_SCHEMES:
            raise ValueError(
                f"must be a Redis URL such as redis://127.0.0.1:6379/0 (scheme one of "
                f"{', '.join(REDIS_SCHEMES)}), got scheme {scheme!r}"
            )
        return value

    @field_validator("output")
    @classmethod
    def _check_output(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if value.startswith(S3_SCHEME):
            bucket, _, prefix = value[len(S3_SCHEME) :].partition("/")
            if not _BUCKET.match(bucket) or ".." in bucket:
                raise ValueError(
                    f"bucket {bucket!r} is not a valid S3 bucket name (3-63 characters: "
                    "lowercase letters, digits, dots, hyphens); write s3://bucket/prefix"
                )
            prefix = prefix.strip("/")
            if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
                raise ValueError(
                    "the prefix after the bucket must be plain path segments, "
                    "e.g. s3://bucket/renders/2025 (no empty, '.' or '..' parts)"
                )
            return f"{S3_SCHEME}{bucket}/{prefix}" if prefix else f"{S3_SCHEME}{bucket}"
        scheme = urlsplit(value).scheme
        if "://" in value:
            raise ValueError(
                f"must be a local directory or s3://bucket/prefix, got scheme {scheme!r}; "
                "for R2, GCS or MinIO use s3:// with RELAYDANCE_S3_ENDPOINT_URL"
            )
        return value

    @field_validator("media_dirs")
    @classmethod
    def _check_media_dirs(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        entries = [part.strip() for part in value.split(os.pathsep) if part.strip()]
        relative = [e for e in entries if not Path(e).expanduser().is_absolute()]
        if relative:
            raise ValueError(
                f"{', '.join(map(repr, relative))} is relative, so the producer and the "
                "workers would each read it from their own working directory; give "
                "absolute directories, e.g. /srv/media"
            )
        return os.pathsep.join(entries)

    @field_validator("output_mode")
    @classmethod
    def _check_output_mode(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        text = value.strip().lower().removeprefix("0o")
        if not re.fullmatch(r"0?[0-7]{3}", text):
            raise ValueError(f"{value!r} is not an octal file mode; write e.g. 0640 or 0644")
        mode = int(text, 8)
        if mode & 0o600 != 0o600:
            raise ValueError(
                f"{value!r} leaves the worker unable to read or write its own files; keep "
                "the owner's rw, e.g. 0640"
            )
        return f"0{mode:03o}"

    @field_validator("s3_addressing_style")
    @classmethod
    def _check_addressing_style(cls, value: str) -> str:
        if value not in ADDRESSING_STYLES:
            raise ValueError(f"must be one of {', '.join(ADDRESSING_STYLES)}, got {value!r}")
        return value

    @field_validator("base_url", "webhook_base_url", "s3_endpoint_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        return None if value is None else _absolute_url(value)

    @field_validator("dialect")
    @classmethod
    def _check_dialect(cls, value: str) -> str:
        if value not in PROVIDERS:
            raise ValueError(f"unknown dialect; known: {', '.join(sorted(PROVIDERS))}")
        return value

    @model_validator(mode="after")
    def _check_sentinel(self) -> Settings:
        if (
            self.redis_url
            and self.redis_url.startswith("sentinel")
            and not (self.redis_sentinel_master)
        ):
            raise ValueError(
                "RELAYDANCE_REDIS_SENTINEL_MASTER is required when REDIS_URL lists sentinels"
            )
        return self

    @model_validator(mode="after")
    def _check_output_place(self) -> Settings:
        # A local RELAYDANCE_OUTPUT is the output directory: one place, however it is named.
        if self.output is None or self.output.startswith(S3_SCHEME):
            return self
        directory = Path(self.output)
        if "output_dir" in self.model_fields_set and directory != self.output_dir:
            raise ValueError(
                "RELAYDANCE_OUTPUT names a directory other than RELAYDANCE_OUTPUT_DIR; "
                "set only one of them (or RELAYDANCE_OUTPUT to s3://bucket/prefix)"
            )
        self.output_dir = directory
        return self

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        if self.poll_interval_min > self.poll_interval_max:
            raise ValueError(
                "RELAYDANCE_POLL_INTERVAL_MIN must not exceed RELAYDANCE_POLL_INTERVAL_MAX"
            )
        if bool(self.ui_user) != bool(self.ui_password and self.ui_password.get_secret_value()):
            raise ValueError("RELAYDANCE_UI_USER and RELAYDANCE_UI_PASSWORD go together; set both")
        if self.webhook_base_url and not self.webhook_secret:
            raise ValueError(
                "RELAYDANCE_WEBHOOK_SECRET is required when RELAYDANCE_WEBHOOK_BASE_URL is set"
            )
        if self.provider_idempotent and self.dialect in WITHOUT_IDEMPOTENCY:
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
            provider = route.provider or self.dialect
            if route.idempotent and provider in WITHOUT_IDEMPOTENCY:
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
                    f"RELAYDANCE_API_KEYS: alias {alias!r} has an empty key; give its key or "
                    "drop it"
                )
        return self

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            if name == "redis_url" and isinstance(value, str):
                value = _without_password(value)
            yield name, value

    # Derived values -------------------------------------------------------------------------

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
        return self.base_url if provider == self.dialect else PROVIDERS[provider]

    def idempotent_for(self, alias: str) -> bool:
        """Whether an ambiguous submission of the alias may be retried with the same
        Idempotency-Key: its own declaration, else the global one, never for a provider
        that documents none."""
        route = self.api_keys.get(alias)
        provider = self.provider_for(alias)
        if provider in WITHOUT_IDEMPOTENCY:
            return False
        if route is not None and route.idempotent is not None:
            return route.idempotent
        return self.provider_idempotent

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

    def media_directories(self) -> list[Path]:
        """``RELAYDANCE_MEDIA_DIRS`` as paths (a PATH-like list); empty when unset."""
        return [Path(p.strip()) for p in (self.media_dirs or "").split(os.pathsep) if p.strip()]

    def file_mode(self) -> int | None:
        """RELAYDANCE_OUTPUT_MODE as a number, or None (the umask decides)."""
        return None if self.output_mode is None else int(self.output_mode, 8)

    def output_bucket(self) -> tuple[str, str] | None:
        """(bucket, prefix) when clips go to an S3-compatible bucket; None for a directory."""
        if self.output is None or not self.output.startswith(S3_SCHEME):
            return None
        bucket, _, prefix = self.output[len(S3_SCHEME) :].partition("/")
        return bucket, prefix

    def concurrency_for(self, alias: str) -> int:
        """Configured concurrency limit of a key alias."""
        return self.key_concurrency.get(alias, self.max_concurrency)

    def rate_for(self, alias: str) -> float:
        """Configured request rate (per second) of a key alias."""
        return self.key_requests_per_second.get(alias, self.requests_per_second)


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.netloc.rpartition('@')[2]}"
    return parts._replace(netloc=netloc).geturl()


def _variable(field: str) -> str:
    # Fields read through an alias (the Redis URL) report the alias itself as the location.
    if field.upper() in _REDIS_NAMES or field.upper().startswith(ENV_PREFIX):
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
