"""The callback URL a job carries: its expiring token, and the log filter that hides it.

The receiver that checks the token is tested in ``tests/integration/test_webhooks.py``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from config.settings import load_settings
from worker.infra.logs import RedactingFilter, redact
from worker.job.callback import TOKEN_GRACE_SECONDS, callback_url_for, token_for

SECRET = "test-webhook-secret-FfKlv3oGMcpjWVecymoUGZKRZkEDKkU5"


def test_callback_url_is_the_base_the_job_id_and_its_expiring_hmac_token() -> None:
    settings = load_settings(webhook_base_url="https://app.example/hooks/", webhook_secret=SECRET)
    expires = 1_000_000 + int(settings.poll_deadline_seconds) + TOKEN_GRACE_SECONDS
    mac = hmac.new(SECRET.encode(), f"rdj_1.{expires}".encode(), hashlib.sha256).hexdigest()
    assert callback_url_for(settings, "rdj_1", now=1_000_000) == (
        f"https://app.example/hooks/rdj_1/{mac}.{expires}"
    )
    assert callback_url_for(load_settings(webhook_base_url=None), "rdj_1") is None


def test_the_log_filter_masks_callback_tokens_in_request_lines() -> None:
    token = token_for(SECRET, "rdj_1")
    record = logging.LogRecord(
        "werkzeug",
        logging.INFO,
        __file__,
        1,
        '%s "%s" %s',
        ("127.0.0.1", f"POST /hooks/rdj_1/{token} HTTP/1.1", 202),
        None,
    )
    assert RedactingFilter().filter(record)
    expires = token.split(".")[1]  # not a secret: only the mac is
    assert record.getMessage() == (
        f'127.0.0.1 "POST /hooks/rdj_1/<redacted>.{expires} HTTP/1.1" 202'
    )
    assert redact(f"url=https://h/hooks/rdj_1/{token}?x") == (
        f"url=https://h/hooks/rdj_1/<redacted>.{expires}?<redacted>"
    )
