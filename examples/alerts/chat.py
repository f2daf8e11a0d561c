"""Page a chat channel when the fleet pauses: a key's account, a provider down, the sweep.

Start the worker with ``-I examples.alerts.chat`` and set::

    RELAYDANCE_ON_ALERT=examples.alerts.chat.page_someone
    STUDIO_CHAT_WEBHOOK=https://hooks.slack.com/services/...   # any incoming-webhook URL

The task receives ``{kind, alias, provider, reason, since, state, fix}`` (see
docs/operations.md, *Faults from outside*) and posts one line of text as ``{"text": ...}``,
the body Slack's and Mattermost's incoming webhooks take.
"""

from __future__ import annotations

import os
import time
from typing import Any

import httpx
from celery import shared_task

__all__ = ["page_someone"]


def message(alert: dict[str, Any]) -> str:
    """The chat line for an alert."""
    about = alert.get("alias") or alert.get("provider") or "the fleet"
    since = time.strftime("%H:%M UTC", time.gmtime(float(alert.get("since") or 0)))
    if alert.get("state") == "ended":
        return f"resolved: {alert['kind']} on {about} (since {since})"
    return f"{alert['kind']} on {about} since {since}: {alert['reason']}\nFix: {alert['fix']}"


@shared_task(name="examples.alerts.chat.page_someone", ignore_result=True)
def page_someone(alert: dict[str, Any]) -> None:
    """Post the alert to ``STUDIO_CHAT_WEBHOOK``."""
    url = os.environ["STUDIO_CHAT_WEBHOOK"]
    httpx.post(url, json={"text": message(alert)}, timeout=10).raise_for_status()
