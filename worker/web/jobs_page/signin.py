"""The door of the jobs page: who is let in, the sign-in form, sign-out, and refusals.

:class:`Gate` turns a request into a :class:`~worker.web.jobs_page.auth.Session` or the
answer that refuses it:

- no credentials configured: 403, unless the loopback opening admits the request;
- a credential in ``Authorization`` (Bearer or Basic): checked, counted by the throttle,
  429 with ``Retry-After`` while the client or the account is throttled;
- a session cookie: checked against Redis (revocable; no throttle, nothing to guess);
- nothing: a browser (``Accept: text/html``) gets the sign-in form, which offers the token
  and/or the user and password, whichever are configured; anything else a 401 with
  ``WWW-Authenticate`` for scripts. Browsers never get a Basic challenge, so they never
  pop the Basic dialog: they sign in through the form, into a session sign-out ends.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import redis

from worker.job.engine import Engine
from worker.web.jobs_page.auth import COOKIE, Credentials, MalformedHeader, Session
from worker.web.jobs_page.http import UiRequest, UiResponse, html_response, redirect, text_response
from worker.web.jobs_page.render import render
from worker.web.jobs_page.sessions import SESSION_SECONDS, SessionStore, SignInThrottle, Verdict

__all__ = ["Gate", "same_origin"]

_NEEDS_CREDENTIALS = ("The jobs page needs credentials: set RELAYDANCE_UI_TOKEN, or "
                      "RELAYDANCE_UI_USER and RELAYDANCE_UI_PASSWORD.\n")  # fmt: skip


def same_origin(request: UiRequest) -> bool:
    """A browser's POST names its page's origin; it must be this host."""
    origin = request.header("origin")
    if not origin:
        return True  # not a browser, or an old one; the CSRF token still decides
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:  # e.g. an unclosed IPv6 bracket
        raise MalformedHeader("Origin") from None
    return netloc == request.header("host")


def _wants_html(request: UiRequest) -> bool:
    return "text/html" in request.header("accept") and not request.path.startswith(
        ("/static/", "/media/")
    )


class Gate:
    """Authentication for one page: credentials plus the sessions and throttle in Redis."""

    def __init__(self, credentials: Credentials, engine: Callable[[], Engine]) -> None:
        self.credentials = credentials
        self._engine = engine
        self._throttles: dict[int, SignInThrottle] = {}

    def _redis(self) -> redis.Redis:
        return self._engine().redis

    def sessions(self) -> SessionStore:
        """The session store on the engine's Redis."""
        return SessionStore(self._redis())

    def throttle(self) -> SignInThrottle:
        """The sign-in throttle on the engine's Redis (its script registered once)."""
        client = self._redis()
        found = self._throttles.get(id(client))
        if found is None:
            found = self._throttles.setdefault(id(client), SignInThrottle(client))
        return found

    # Letting in -----------------------------------------------------------------------------

    def admit(self, request: UiRequest) -> Session | UiResponse:
        """The visitor's session, or the answer refusing them."""
        creds = self.credentials
        if not creds.configured:
            return self._open(request)
        attempt = creds.header_attempt(request.header("authorization"))
        if attempt is not None:
            verdict = self.throttle().record(client=request.client, account=attempt.account,
                                             ok=attempt.ok)  # fmt: skip
            if not verdict.allowed:
                return self._too_many(request, verdict)
            if attempt.ok:
                return Session(attempt.kind, attempt.ident)
            return self.refuse(request)
        cookie = request.cookie(COOKIE)
        if cookie and self.sessions().valid(cookie, creds.fingerprint):
            return Session("cookie", cookie)
        return self.refuse(request)

    def _open(self, request: UiRequest) -> Session | UiResponse:
        creds = self.credentials
        if not creds.open_on_loopback:
            return text_response(_NEEDS_CREDENTIALS, 403)
        why = creds.local_refusal(client=request.client, host=request.header("host"),
                                  headers=request.headers)  # fmt: skip
        if why:
            return text_response(
                f"The jobs page is open without credentials to this machine only, and this "
                f"request was refused: {why}. {_NEEDS_CREDENTIALS}", 403)  # fmt: skip
        return Session("local", "local")

    def refuse(self, request: UiRequest, *, error: str = "", status: int = 401) -> UiResponse:
        """401: the sign-in form for a browser, a challenge for a script."""
        creds = self.credentials
        if _wants_html(request):
            return self.form(request, target=request.root + request.path, error=error,
                             status=status)  # fmt: skip
        challenge = 'Basic realm="relaydance", charset="UTF-8"' if creds.basic \
            else 'Bearer realm="relaydance"'  # fmt: skip
        return text_response("sign in to see the jobs page\n", status,
                             extra=[("WWW-Authenticate", challenge)])  # fmt: skip

    def form(self, request: UiRequest, *, target: str, error: str, status: int) -> UiResponse:
        """The sign-in page, offering what is configured."""
        creds = self.credentials
        body = render("login.html", root=request.root, next=target, error=error,
                      token=bool(creds.token), basic=creds.basic, title="Sign in",
                      active="", sign_out=False, csrf="")  # fmt: skip
        return html_response(body, status)

    def _too_many(self, request: UiRequest, verdict: Verdict, *, target: str = "") -> UiResponse:
        wait = [("Retry-After", str(verdict.retry_after))]
        message = f"Too many failed sign-ins: try again in {verdict.retry_after} s."
        if _wants_html(request) or target:
            response = self.form(request, target=target or request.root + request.path,
                                 error=message, status=429)  # fmt: skip
            response.headers.extend(wait)
            return response
        return text_response(message + "\n", 429, extra=wait)

    # The form, and leaving --------------------------------------------------------------------

    def login(self, request: UiRequest) -> UiResponse:
        """``POST /login``: check the form, open a session, go back where the user was."""
        if not self.credentials.configured:
            return text_response(_NEEDS_CREDENTIALS, 403)
        if not same_origin(request):
            return text_response("cross-site sign-in refused\n", 403)
        form = request.form()
        target = form.get("next", "")
        if not target.startswith(request.root + "/") or target.startswith("//") or "\\" in target:
            target = request.root + "/jobs"
        attempt = self.credentials.form_attempt(form)
        if attempt is None:
            return self.form(request, target=target, error="Fill in the form.", status=400)
        opening = self.sessions().opening(self.credentials.fingerprint)
        verdict = self.throttle().record(client=request.client, account=attempt.account,
                                         ok=attempt.ok, session=opening)  # fmt: skip
        if not verdict.allowed:
            return self._too_many(request, verdict, target=target)
        if not attempt.ok:
            wrong = "That token is not the one configured." if attempt.account == "token" \
                else "That user and password are not the ones configured."  # fmt: skip
            return self.form(request, target=target, error=wrong, status=401)
        cookie = self._cookie(request, opening.session_id)
        return redirect(target, extra=[("Set-Cookie", cookie)])

    def logout(self, request: UiRequest, session: Session) -> UiResponse:
        """``POST /logout``: end the session everywhere and forget the cookie."""
        if session.kind == "cookie":
            self.sessions().end(session.ident)
        gone = self._cookie(request, "", max_age=0)
        return redirect(request.root + "/jobs", extra=[("Set-Cookie", gone)])

    def _cookie(self, request: UiRequest, value: str, *, max_age: int | None = None) -> str:
        age = SESSION_SECONDS if max_age is None else max_age
        cookie = f"{COOKIE}={value}; Path={request.root or '/'}; HttpOnly; SameSite=Strict; " \
                 f"Max-Age={age}"  # fmt: skip
        return cookie + "; Secure" if request.https else cookie
