"""The web part of the settings: webhooks, the jobs page and the /metrics listener."""

from __future__ import annotations

import ipaddress
from typing import Any, Self

from pydantic import BaseModel, Field, SecretStr, ValidationInfo, field_validator, model_validator

from config.parts.checks import absolute_url, stripped_secret
from config.secret_strength import weakness

__all__ = ["WebSettings"]

# What each secret guards, for the message refusing a weak one.
GUARDS = {
    "webhook_secret": "sign callback URLs",
    "metrics_token": "guard /metrics",
    "ui_token": "guard the jobs page",
    "ui_password": "guard the jobs page",
}


class WebSettings(BaseModel):
    """What `relaydance web` serves: the webhook receiver, the jobs page and /metrics."""

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

    @field_validator(*GUARDS, mode="before")
    @classmethod
    def _strip_secret(cls, value: Any) -> Any:
        return stripped_secret(value)

    @field_validator(*GUARDS)
    @classmethod
    def _strong_enough(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        # Guessable secrets open the page, /metrics, or (offline, from one captured
        # callback URL) every job's webhook: each needs 128 bits (config/secret_strength.py).
        if value is not None and info.field_name is not None:
            problem = weakness(value.get_secret_value(), purpose=GUARDS[info.field_name])
            if problem is not None:
                raise ValueError(problem)
        return value

    @field_validator("webhook_base_url")
    @classmethod
    def _check_webhook_url(cls, value: str | None) -> str | None:
        return absolute_url(value)

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

    @model_validator(mode="after")
    def _check_pairs(self) -> Self:
        if bool(self.ui_user) != bool(self.ui_password and self.ui_password.get_secret_value()):
            raise ValueError("RELAYDANCE_UI_USER and RELAYDANCE_UI_PASSWORD go together; set both")
        if self.webhook_base_url and not self.webhook_secret:
            raise ValueError(
                "RELAYDANCE_WEBHOOK_SECRET is required when RELAYDANCE_WEBHOOK_BASE_URL is set"
            )
        return self
