"""Mount the jobs page in a Django project.

In the project's ``urls.py``::

    path("ui/", include("worker.web.integrations.django_ui")),

The page keeps its own credentials (``RELAYDANCE_UI_TOKEN``, or ``RELAYDANCE_UI_USER`` and
``RELAYDANCE_UI_PASSWORD``) and its own CSRF tokens, so the view is exempt from Django's
CSRF middleware; without credentials it refuses every request.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import re_path
from django.views.decorators.csrf import csrf_exempt

from config.settings import get_settings
from worker.web.jobs_page import Credentials, JobsPage, UiRequest
from worker.web.jobs_page.http import MAX_FORM_BYTES

__all__ = ["page_view", "serve", "urlpatterns"]


def serve(request: HttpRequest, rest: str = "") -> HttpResponse | StreamingHttpResponse:
    """Any path below the mount point (undecorated)."""
    root = request.path[: len(request.path) - len(rest)].rstrip("/")
    body = request.read(MAX_FORM_BYTES + 1) if request.method == "POST" else b""
    result = JobsPage(Credentials.from_settings(get_settings()))(UiRequest(
        method=request.method or "GET", path="/" + rest, root=root,
        query={k: v for k, v in request.GET.items()}, body=body,
        headers={k.lower(): v for k, v in request.headers.items()},
        client=request.META.get("REMOTE_ADDR"), https=request.is_secure(),
    ))  # fmt: skip
    response: HttpResponse | StreamingHttpResponse
    if isinstance(result.body, bytes):
        response = HttpResponse(result.body, status=result.status)
    else:
        response = StreamingHttpResponse(result.body, status=result.status)
    for key, value in result.headers:  # one Set-Cookie at most: a plain header will do
        response[key] = value
    return response


# Decorated by call, not by syntax: Django ships no type information.
page_view = csrf_exempt(serve)

urlpatterns = [re_path(r"^(?P<rest>.*)$", page_view, name="relaydance-jobs-page")]
