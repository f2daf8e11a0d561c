"""Mount the jobs page in a Flask app: ``app.register_blueprint(jobs_page_blueprint())``.

The page keeps its own credentials (``RELAYDANCE_UI_TOKEN``, or ``RELAYDANCE_UI_USER`` and
``RELAYDANCE_UI_PASSWORD``) and its own CSRF tokens; without credentials it refuses every
request, whatever address the app listens on. With Flask-WTF's ``CSRFProtect`` on,
exempt the blueprint (``csrf.exempt(bp)``): its forms carry the page's own token.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from config.settings import get_settings
from worker.web.jobs_page import Credentials, JobsPage, UiRequest
from worker.web.jobs_page.http import MAX_FORM_BYTES

__all__ = ["jobs_page_blueprint"]


def jobs_page_blueprint(
    url_prefix: str = "/ui", *, name: str = "relaydance_jobs_page", page: JobsPage | None = None
) -> Blueprint:
    """A blueprint serving every path below ``url_prefix`` with the jobs page."""
    blueprint = Blueprint(name, __name__, url_prefix=url_prefix)
    root = "/" + url_prefix.strip("/")
    methods = ["GET", "HEAD", "POST"]

    def serve(rest: str = "") -> Response:
        handler = page or JobsPage(Credentials.from_settings(get_settings()))
        body = request.stream.read(MAX_FORM_BYTES + 1) if request.method == "POST" else b""
        result = handler(UiRequest(
            method=request.method, path="/" + rest, root=request.script_root + root,
            query=request.args.to_dict(), body=body, client=request.remote_addr,
            headers={k.lower(): v for k, v in request.headers.items()},
            https=request.scheme == "https",
        ))  # fmt: skip
        response = Response(result.body, status=result.status)
        response.headers.clear()
        for key, value in result.headers:
            response.headers.add(key, value)
        return response

    blueprint.add_url_rule("/", "index", serve, methods=methods)
    blueprint.add_url_rule("/<path:rest>", "page", serve, methods=methods)
    return blueprint
