"""Receive RelayDance webhooks in a Django project.

In the project's ``urls.py``::

    path("hooks/", include("worker.web.integrations.django")),

and set ``RELAYDANCE_WEBHOOK_BASE_URL=https://your.host/hooks``. The view is CSRF-exempt:
the provider posts no CSRF token; the HMAC token in the path is the authentication.

Django logs the path of every 4xx answer (``django.request``) and ``runserver`` every
request line (``django.server``); mask the tokens in both::

    LOGGING = {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"callback_tokens": {"()": "worker.infra.logs.RedactingFilter"}},
        "loggers": {"django.request": {"filters": ["callback_tokens"]}},
    }
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from worker.web.bodies import MalformedLength, declared_length
from worker.web.receiver import MAX_BODY_BYTES, handle_webhook, receiver_health

__all__ = ["health", "receive", "urlpatterns", "webhook_view"]


def receive(request: HttpRequest, job_id: str, token: str) -> JsonResponse:
    """``POST <mount>/<job_id>/<token>``: the webhook receiver (undecorated)."""
    try:
        declared = declared_length(request.META.get("CONTENT_LENGTH"))
    except MalformedLength as exc:
        return JsonResponse({"ok": False, "error": str(exc)}, status=400)
    if declared is not None and declared > MAX_BODY_BYTES:
        body = b"\0" * (MAX_BODY_BYTES + 1)  # refused by size; not worth reading
    else:
        # read(), not .body: .body would take the whole upload into memory first.
        body = request.read(MAX_BODY_BYTES + 1)
    status, payload = handle_webhook(
        job_id, token, body, request.META.get("CONTENT_TYPE", ""), claim=request.GET.get("c")
    )
    return JsonResponse(payload, status=status)


def health(request: HttpRequest) -> JsonResponse:
    """``GET <mount>/healthz``: workers call it through the base URL at start."""
    status, payload = receiver_health()
    return JsonResponse(payload, status=status)


# Decorated by call, not by syntax: Django ships no type information.
webhook_view = csrf_exempt(require_POST(receive))
health_view = require_GET(health)

urlpatterns = [
    path("healthz", health_view, name="relaydance-webhook-health"),
    path("<str:job_id>/<str:token>", webhook_view, name="relaydance-webhook"),
]
