"""The limits part of the settings: slots and request rates per key alias, pauses, breakers."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field
from pydantic_settings import NoDecode

__all__ = ["LimitSettings"]

Concurrency = Annotated[int, Field(ge=1, le=100_000)]
Rate = Annotated[float, Field(gt=0, le=10000)]


class LimitSettings(BaseModel):
    """Limits per key alias, and what stops or pauses a key or a provider."""

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

    def concurrency_for(self, alias: str) -> int:
        """Configured concurrency limit of a key alias."""
        return self.key_concurrency.get(alias, self.max_concurrency)

    def rate_for(self, alias: str) -> float:
        """Configured request rate (per second) of a key alias."""
        return self.key_requests_per_second.get(alias, self.requests_per_second)
