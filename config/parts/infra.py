"""The infrastructure part of the settings: Redis, logs and task events."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Self
from urllib.parse import urlsplit

from pydantic import AliasChoices, BaseModel, Field, field_validator, model_validator

__all__ = ["REDIS_NAMES", "REDIS_SCHEMES", "InfraSettings"]

REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+socket", "sentinel")
# The variables the Redis URL is read from, in order.
REDIS_NAMES = ("RELAYDANCE_REDIS_URL", "REDIS_URL")


class InfraSettings(BaseModel):
    """Redis (broker, result store, job records, limits), logs and Celery's task events."""

    redis_url: str | None = Field(
        None,
        validation_alias=AliasChoices(*REDIS_NAMES),
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
    log_json: bool = Field(False, description="Log one JSON object per line.")
    task_events: bool = Field(
        True, description="Workers send task events (Flower needs them; they cost CPU)."
    )

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

    @model_validator(mode="after")
    def _check_sentinel(self) -> Self:
        if (
            self.redis_url
            and self.redis_url.startswith("sentinel")
            and not self.redis_sentinel_master
        ):
            raise ValueError(
                "RELAYDANCE_REDIS_SENTINEL_MASTER is required when REDIS_URL lists sentinels"
            )
        return self

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            if name == "redis_url" and isinstance(value, str):
                value = _without_password(value)
            yield name, value


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.netloc.rpartition('@')[2]}"
    return parts._replace(netloc=netloc).geturl()
