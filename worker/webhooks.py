"""Webhook URLs: ``<base>/<job id>/<token>``, token = HMAC-SHA256(secret, job id)."""

from __future__ import annotations

import hashlib
import hmac

from config.settings import Settings

__all__ = ["callback_url_for", "token_for", "verify_token"]


def token_for(secret: str, job_id: str) -> str:
    """The callback token of a job."""
    return hmac.new(secret.encode(), job_id.encode(), hashlib.sha256).hexdigest()


def verify_token(secret: str, job_id: str, token: str) -> bool:
    """Whether ``token`` is the job's token, compared in constant time."""
    return hmac.compare_digest(token_for(secret, job_id), token)


def callback_url_for(settings: Settings, job_id: str) -> str | None:
    """The job's ``metadata.callback_url``, or None when webhooks are off."""
    if not settings.webhook_base_url or settings.webhook_secret is None:
        return None
    token = token_for(settings.webhook_secret.get_secret_value(), job_id)
    return f"{settings.webhook_base_url}/{job_id}/{token}"
