"""The simulator's knobs: env vars ``RELAYDANCE_SIM_*``, CLI flags, or ``POST /_sim/config``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from simulator.media import MAX_VIDEO_BYTES

__all__ = ["ENV_PREFIX", "SimConfig", "SimConfigError", "update_config"]

ENV_PREFIX = "RELAYDANCE_SIM_"


class SimConfigError(ValueError):
    """A knob value the simulator refuses; the message names each knob."""


class SimConfig(BaseSettings):
    """How the simulated provider behaves. Every field is a knob, changeable at run time."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    # Dialects.
    dialect: Literal["both", "relaydance", "kinovi"] = Field(
        "both",
        description="Which provider APIs answer: RelayDance at /v1, Kinovi at /api/v1, or "
        "both at once (the other's routes answer 404).",
    )
    billed_factor: float = Field(
        1.0,
        ge=0,
        le=100,
        description="Kinovi reports this multiple of the list price as creditsUsed (to test "
        "that spend is read from the provider, not estimated).",
    )

    # Generation.
    gen_time_mean: float = Field(2.0, ge=0, le=86400, description="Mean generation time, s.")
    gen_time_jitter: float = Field(
        0.2, ge=0, le=1, description="Generation time varies by +/- this fraction of the mean."
    )
    failure_rate: float = Field(0.0, ge=0, le=1, description="Share of tasks that end failed.")
    image_gen_time: float = Field(
        0.0,
        ge=0,
        le=3600,
        description="Seconds a synchronous image request generates before it answers (the "
        "images are billed first); it counts against concurrency_cap meanwhile.",
    )

    # Limits and faults.
    concurrency_cap: int = Field(
        0, ge=0, description="Tasks not yet final per API key before submit answers 429; 0: none."
    )
    retry_after: float = Field(1.0, ge=0, description="Retry-After seconds sent with a 429.")
    error_5xx_rate: float = Field(
        0.0, ge=0, le=1, description="Share of /v1 requests answered 5xx before any work."
    )
    lost_response_rate: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Share of accepted submits (and image requests) answered 502 although the "
        "task (the images) exists (billed).",
    )
    drop_reply_every: int = Field(
        0,
        ge=0,
        description="Every Nth accepted submit (and, counted apart, image request): the task "
        "(the images) exists (billed), then the connection drops before the reply; 0: never.",
    )
    image_drop_reply_every: int | None = Field(
        None,
        ge=0,
        description="Every Nth accepted image request has its connection dropped after the "
        "images exist (billed); unset: drop_reply_every's N, counted apart; 0: never.",
    )
    trickle_seconds: float = Field(
        0.0,
        ge=0,
        le=3600,
        description="Spread every /v1 response body over this many seconds, a byte at a time.",
    )
    honour_idempotency: bool = Field(
        False,
        description="Answer a repeated Idempotency-Key with its first task. Off by default: "
        "the provider's documentation promises nothing.",
    )
    time_scale: float = Field(
        1.0,
        gt=0,
        le=1000,
        description="Multiplies every simulated duration (generation, Retry-After, url ttl, "
        "webhook retries) to run the real timer order on a faster clock.",
    )
    outage: bool = Field(
        False,
        description="A provider outage: every provider route (and file download) answers 503 "
        "in the provider's own error JSON, before any work, until turned off.",
    )
    credit_clips: int | None = Field(
        None,
        ge=0,
        description="The account's credit, in clips: each accepted submission spends one, "
        "and each image one; with too little left a request is refused (RelayDance: 403 "
        "insufficient balance; Kinovi: 402). Setting it again tops up. Unset: unlimited.",
    )
    revoked_keys: list[str] = Field(
        default_factory=list,
        description="Keys refused with 401 on every route, by fingerprint (the first 8 hex "
        "digits of the key's sha256, as /_sim/stats shows them); '*': every key.",
    )
    forbidden_models: list[str] = Field(
        default_factory=list,
        description="Models every key is refused with 403 ('may not use this model') on submit.",
    )
    required_key_prefix: str = Field(
        "", description="Keys not starting with this are refused 401 (e.g. 'sk-'); '': any key."
    )
    latency: float = Field(0.0, ge=0, le=60, description="Seconds added to every /v1 response.")

    # Webhooks.
    webhooks: bool = Field(True, description="Deliver webhooks to metadata.callback_url.")
    webhook_allow_remote: bool = Field(
        False,
        description="Deliver to any host; by default only loopback callback urls get webhooks.",
    )
    webhook_duplicates: int = Field(1, ge=1, le=10, description="Deliver each webhook N times.")
    webhook_reorder: bool = Field(
        False, description="Also deliver a stale `running` webhook after the final one."
    )
    webhook_drop_rate: float = Field(
        0.0, ge=0, le=1, description="Share of webhooks never sent at all."
    )
    webhook_max_attempts: int = Field(
        5, ge=1, le=20, description="Delivery attempts per webhook before giving up."
    )
    webhook_retry_base: float = Field(
        0.5, ge=0, le=600, description="First retry delay, s; doubles on each further failure."
    )
    webhook_timeout: float = Field(5.0, gt=0, le=120, description="Timeout of one delivery, s.")

    # Downloads.
    url_ttl: float = Field(3600.0, gt=0, description="Seconds a handed-out file url stays valid.")
    video_bytes: int = Field(
        0, ge=0, le=MAX_VIDEO_BYTES, description="Pad the mp4 to this many bytes; 0: smallest."
    )
    download_rate: float = Field(
        0.0, ge=0, description="Serve downloads at this many bytes/s; 0: as fast as possible."
    )
    download_redirect: str = Field(
        "",
        description="'' serves files directly; 'self' answers 302 to a second local url; "
        "an absolute URL answers 302 to it (to test redirect checks).",
    )
    public_url: str = Field(
        "", description="Base of handed-out urls; '' takes it from the request's Host header."
    )
    max_upload_bytes: int = Field(
        20 * 1024 * 1024, gt=0, description="Largest accepted upload to /v1/files, bytes."
    )

    seed: int | None = Field(None, description="Seed of the random generator; unset: random.")


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        name = ".".join(str(p) for p in err.get("loc", ())) or "config"
        parts.append(f"{name}: {err['msg']}")
    return "; ".join(parts)


def update_config(config: SimConfig, changes: dict[str, Any]) -> SimConfig:
    """A new config with ``changes`` applied; raises :class:`SimConfigError` on bad knobs."""
    # Passing every field explicitly means the environment cannot override a change.
    merged = {**config.model_dump(), **changes}
    try:
        return SimConfig.model_validate(merged)
    except ValidationError as exc:
        raise SimConfigError(_describe(exc)) from None
