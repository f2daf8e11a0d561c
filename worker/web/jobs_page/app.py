"""The jobs page as one callable, :class:`JobsPage`: a :class:`UiRequest` in, a response out.

Every path below the mount needs a session (see :mod:`worker.web.jobs_page.signin`), assets
and clips included; only the sign-in form's POST does not. A POST also needs the session's
CSRF token and, when the browser sends an ``Origin``, one naming this host. Cancel and
resubmit each have a confirmation page (GET) whose form makes the POST. A header the page
reads that does not parse is answered 400 (a ``Range`` the clip cannot serve, 416), and a
Redis that does not answer 503, never a 500. Over https every answer carries HSTS.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from urllib.parse import quote

import redis

from worker.job.engine import Engine, get_engine
from worker.web.jobs_page import pages
from worker.web.jobs_page.actions import ActionRefused, Actions, producer_actions
from worker.web.jobs_page.auth import Credentials, MalformedHeader, Session
from worker.web.jobs_page.detail import REMOTE_MAY_LIVE, RESUBMITTABLE
from worker.web.jobs_page.http import (
    UiRequest,
    UiResponse,
    html_response,
    redirect,
    security_headers,
    text_response,
)
from worker.web.jobs_page.media import JOB_ID, MEDIA_TYPES, clip_path, serve_file
from worker.web.jobs_page.render import render, static_file
from worker.web.jobs_page.signin import Gate, same_origin

__all__ = ["JobsPage"]

logger = logging.getLogger(__name__)

_GET: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^/?$"), "home"),
    (re.compile(r"^/jobs$"), "jobs"),
    (re.compile(r"^/jobs/([^/]+)$"), "job"),
    (re.compile(r"^/jobs/([^/]+)/(cancel|resubmit|retake)$"), "confirm"),
    (re.compile(r"^/batches$"), "batches"),
    (re.compile(r"^/batches/([^/]+)$"), "batch"),
    (re.compile(r"^/batches/([^/]+)/report\.(csv|json)$"), "report"),
    (re.compile(r"^/batches/([^/]+)/sheet$"), "sheet"),
    (re.compile(r"^/keys$"), "keys"),
    (re.compile(r"^/media/([^/]+)\.(mp4|json|png|jpg|webp)$"), "media"),
    (re.compile(r"^/static/([^/]+)$"), "static"),
]
_ACTION = re.compile(r"^/jobs/([^/]+)/(cancel|resubmit|retake)$")
HSTS = ("Strict-Transport-Security", "max-age=31536000")


def _attachment(filename: str) -> str:
    """A Content-Disposition that saves as ``filename`` (RFC 6266, any characters)."""
    plain = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_"
                    for c in filename)  # fmt: skip
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(filename)}"


class JobsPage:
    """Serves the pages; adapters (Starlette, Flask, Django) only translate requests."""

    def __init__(
        self,
        credentials: Credentials,
        *,
        engine: Callable[[], Engine] = get_engine,
        actions: Actions | None = None,
    ) -> None:
        self.credentials = credentials
        self.engine = engine
        self.actions = actions or producer_actions()
        self.gate = Gate(credentials, engine)

    def __call__(self, request: UiRequest) -> UiResponse:
        """Answer one request."""
        try:
            response = self._answer(request)
        except MalformedHeader as exc:
            response = text_response(f"{exc}\n", 400)
        except redis.RedisError as exc:
            logger.warning("jobs page: Redis did not answer (%s)", type(exc).__name__)
            response = text_response("the jobs page cannot reach Redis; try again shortly\n", 503)
        if request.https:
            response.headers.append(HSTS)
        return response

    def _answer(self, request: UiRequest) -> UiResponse:
        if request.method == "POST" and request.path == "/login":
            return self.gate.login(request)
        session = self.gate.admit(request)
        if not isinstance(session, Session):
            return session
        if request.method == "POST":
            return self._post(request, session)
        if request.method not in ("GET", "HEAD"):
            return text_response("method not allowed\n", 405, extra=[("Allow", "GET, HEAD, POST")])
        response = self._get(request, session)
        if request.method == "HEAD":
            response.body = b""
        return response

    # Reading ------------------------------------------------------------------------------

    def _context(self, request: UiRequest, session: Session) -> pages.Context:
        return pages.Context(self.engine(), request.root, self.credentials.csrf_token(session),
                             self.actions.clip_url, sign_out=session.kind == "cookie")  # fmt: skip

    def _get(self, request: UiRequest, session: Session) -> UiResponse:
        for pattern, name in _GET:
            found = pattern.match(request.path)
            if found is not None:
                return self._route(name, found.groups(), request, session)
        return text_response("not found\n", 404)

    def _route(
        self, name: str, args: tuple[str, ...], request: UiRequest, session: Session
    ) -> UiResponse:
        if name == "home":
            return redirect(request.root + "/jobs")
        if name == "static":
            found = static_file(args[0])
            if found is None:
                return text_response("not found\n", 404)
            data, content_type = found
            return UiResponse(200, [("Content-Type", content_type), *security_headers()], data)
        if name == "media":
            return self._media(request, args[0], args[1])
        ctx = self._context(request, session)
        if name == "confirm":
            return self._confirm(request, ctx, args[0], args[1])
        views: dict[str, Callable[..., UiResponse]] = {
            "jobs": pages.jobs_page, "job": pages.job_page, "batches": pages.batches_page,
            "batch": pages.batch_page, "report": pages.report_download, "keys": pages.keys_page,
            "sheet": pages.sheet_page,
        }  # fmt: skip
        return views[name](request, ctx, *args)

    def _media(self, request: UiRequest, job_id: str, kind: str) -> UiResponse:
        engine = self.engine()
        job = engine.store.get(job_id) if JOB_ID.fullmatch(job_id) else None
        path = None
        if job is not None:
            path = clip_path(engine.settings.output_dir, job_id, suffix=f".{kind}",
                             recorded=job.output_path)  # fmt: skip
        if path is None:
            return text_response(f"no such {'manifest' if kind == 'json' else 'file'}\n", 404)
        response = serve_file(path, range_header=request.header("range"),
                              head=request.method == "HEAD",
                              content_type=MEDIA_TYPES[f".{kind}"])  # fmt: skip
        if request.query.get("download") == "1":  # a link that saves the file under its name
            response.headers.append(("Content-Disposition", _attachment(path.name)))
        return response

    def _confirm(self, request: UiRequest, ctx: pages.Context, job_id: str, act: str) -> UiResponse:
        job = ctx.engine.store.get(job_id) if JOB_ID.fullmatch(job_id) else None
        if job is None:
            return text_response("no such job\n", 404)
        if act == "retake":
            body = render("retake.html", **ctx.base(request, "jobs", fragment=False), job=job,
                          allowed=job.is_final)  # fmt: skip
            return html_response(body, 200 if job.is_final else 409)
        allowed = not job.is_final if act == "cancel" else job.state in RESUBMITTABLE
        body = render("confirm.html", **ctx.base(request, "jobs", fragment=False), job=job,
                      act=act, allowed=allowed, remote=job.state in REMOTE_MAY_LIVE)  # fmt: skip
        return html_response(body, 200 if allowed else 409)

    # Acting -------------------------------------------------------------------------------

    def _post(self, request: UiRequest, session: Session) -> UiResponse:
        form = request.form()
        if not same_origin(request) or not self.credentials.csrf_ok(session, form.get("csrf", "")):
            return text_response("refused: this form's CSRF token is missing or stale; "
                                 "reload the page and try again\n", 403)  # fmt: skip
        if request.path == "/logout":
            return self.gate.logout(request, session)
        found = _ACTION.match(request.path)
        if found is None or not JOB_ID.fullmatch(found.group(1)):
            return text_response("not found\n", 404)
        job_id, act = found.groups()
        if act == "retake":
            return self._retake(request, job_id, form.get("prompt"))
        return self._act(request, job_id, act)

    def _retake(self, request: UiRequest, job_id: str, prompt: str | None) -> UiResponse:
        try:
            # An emptied prompt is refused by the validation, not taken as "the old one".
            new_id = self.actions.retake(job_id, None if prompt is None else prompt.strip())
        except ActionRefused as exc:
            return text_response(f"refused: {exc}\n", 409)
        logger.info("job %s retaken from the jobs page as %s", job_id, new_id)
        return redirect(f"{request.root}/jobs/{quote(new_id)}?notice=retake")

    def _act(self, request: UiRequest, job_id: str, act: str) -> UiResponse:
        back = f"{request.root}/jobs/{quote(job_id)}"
        if act == "cancel":
            done = self.actions.cancel(job_id)
            logger.info("job %s cancel from the jobs page: %s", job_id, done)
            return redirect(f"{back}?notice={'canceled' if done else 'not_canceled'}")
        try:
            self.actions.resubmit(job_id)
        except ActionRefused as exc:
            return text_response(f"refused: {exc}\n", 409)
        logger.info("job %s resubmitted from the jobs page", job_id)
        return redirect(f"{back}?notice=resubmitted")
