"""Who may see the jobs page, and proof that a POST came from its own form.

The page shows prompts, spend and clips, and its buttons cancel or pay for work, so it
is never open by default. Credentials come from the settings: ``RELAYDANCE_UI_TOKEN``
and/or ``RELAYDANCE_UI_USER`` + ``RELAYDANCE_UI_PASSWORD``. A browser signs in with
either through the sign-in form, which starts a server-side session
(:mod:`worker.web.jobs_page.sessions`); scripts send ``Authorization: Bearer <token>``
or HTTP Basic with every request. Failed attempts are throttled per client and per
account in Redis.

With no credentials, the page opens only when ``relaydance web`` is told so
(``--open-ui-on-loopback``), listens on a loopback address, and the request comes from
a loopback peer with a loopback ``Host`` (no DNS rebinding) and carries no forwarding
header: a proxy in front (nginx, haproxy) says so in one, and would otherwise turn every
remote client into a local one. A bare TCP forwarder (socat, ``ssh -R``) says nothing,
which is why the opening is never the default.

The CSRF key is derived from the credentials, so changing them invalidates every form;
a POST needs a CSRF token that is an HMAC of the session under that key, and the
session cookie is ``SameSite=Strict`` as well.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from config.parts.web import WebSettings

__all__ = [
    "COOKIE",
    "Attempt",
    "Credentials",
    "MalformedHeader",
    "Session",
    "forwarding_headers",
    "is_loopback_host",
]

COOKIE = "rd_ui"
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
# Headers a proxy adds to say whom it forwards for (RFC 7239 and the de facto ones).
_FORWARDING = frozenset({"forwarded", "via", "x-real-ip", "x-client-ip", "true-client-ip",
                         "cf-connecting-ip", "fastly-client-ip", "x-cluster-client-ip",
                         "x-original-forwarded-for", "x-proxyuser-ip"})  # fmt: skip


class MalformedHeader(ValueError):
    """A request header the page reads could not be parsed (answered 400)."""

    def __init__(self, header: str) -> None:
        super().__init__(f"malformed {header} header")
        self.header = header


def is_loopback_host(host: str) -> bool:
    """Whether a bind address or a Host name points at this machine only."""
    name = host.strip().lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def forwarding_headers(headers: Mapping[str, str]) -> list[str]:
    """The names of the proxy forwarding headers a request carries (lower-case)."""
    return sorted(n for n in headers if n in _FORWARDING or n.startswith("x-forwarded-"))


def _host_name(host_header: str) -> str:
    """The name of a Host header, without its port (``[::1]:8000`` -> ``[::1]``)."""
    if host_header.startswith("["):
        return host_header.partition("]")[0] + "]"
    return host_header.rpartition(":")[0] if host_header.count(":") == 1 else host_header


@dataclass(frozen=True)
class Session:
    """An authenticated visitor: how they proved it, and the value their CSRF token signs."""

    kind: str  # "cookie", "basic", "bearer" or "local"
    ident: str


@dataclass(frozen=True)
class Attempt:
    """One presented credential: which account it names, and whether it was right."""

    kind: str  # "bearer" or "basic" (a header), "form" (the sign-in form)
    account: str  # "token" or "user": what the per-account throttle counts
    ok: bool
    ident: str = ""  # the Basic user, for the CSRF token


@dataclass(frozen=True)
class Credentials:
    """The configured credentials, or the loopback-only opening when there are none."""

    token: str | None = None
    user: str | None = None
    password: str | None = None
    open_on_loopback: bool = False
    _local_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    @classmethod
    def from_settings(cls, settings: WebSettings, *, open_on_loopback: bool = False) -> Credentials:
        """The settings' credentials; ``open_on_loopback`` (an explicit opt-in) allows the
        local opening when there are none."""
        token = settings.ui_token.get_secret_value() if settings.ui_token else None
        password = settings.ui_password.get_secret_value() if settings.ui_password else None
        found = cls(token=token, user=settings.ui_user, password=password)
        if found.configured:
            return found
        return cls(open_on_loopback=open_on_loopback)

    @property
    def configured(self) -> bool:
        """Whether any credential is set."""
        return bool(self.token or (self.user and self.password))

    @property
    def basic(self) -> bool:
        """Whether a user and password are set (the form, or HTTP Basic)."""
        return bool(self.user and self.password)

    def _material(self) -> bytes:
        parts = ("relaydance-ui", self.token or "", self.user or "", self.password or "")
        return hashlib.sha256("\0".join(parts).encode()).digest()

    @property
    def fingerprint(self) -> str:
        """Names these credentials in a session record: new credentials end old sessions."""
        return hashlib.sha256(b"fingerprint\0" + self._material()).hexdigest()

    def _key(self) -> bytes:
        return self._material() if self.configured else self._local_key

    def _sign(self, purpose: str) -> str:
        digest = hmac.new(self._key(), purpose.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    # Checking what a visitor presents -------------------------------------------------------

    def check_token(self, token: str) -> bool:
        """Whether a typed or bearer token is the configured one (constant time)."""
        return bool(self.token) and hmac.compare_digest(token.encode(), str(self.token).encode())

    def check_user(self, user: str, password: str) -> bool:
        """Whether a user and password are the configured ones (constant time, both)."""
        ok_user = hmac.compare_digest(user.encode(), str(self.user).encode())
        ok_password = hmac.compare_digest(password.encode(), str(self.password).encode())
        return self.basic and ok_user and ok_password

    def header_attempt(self, authorization: str) -> Attempt | None:
        """The credential an ``Authorization`` header presents; None when it presents none.

        Raises :class:`MalformedHeader` for Basic credentials that are not base64 of
        ``user:password`` in UTF-8.
        """
        scheme, _, value = authorization.strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and value:
            return Attempt("bearer", "token", self.check_token(value), "bearer")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(value.encode("ascii"), validate=True).decode("utf-8")
        except (ValueError, binascii.Error, UnicodeError):  # UnicodeError: not ASCII/UTF-8
            raise MalformedHeader("Authorization") from None
        user, colon, password = decoded.partition(":")
        if not colon:
            raise MalformedHeader("Authorization")
        return Attempt("basic", "user", self.check_user(user, password), user)

    def form_attempt(self, form: Mapping[str, str]) -> Attempt | None:
        """The credential the sign-in form posted: a token, or a user and password."""
        if form.get("token"):
            return Attempt("form", "token", self.check_token(form["token"]))
        if form.get("user") or form.get("password"):
            ok = self.check_user(form.get("user", ""), form.get("password", ""))
            return Attempt("form", "user", ok)
        return None

    def local_refusal(self, *, client: str | None, host: str, headers: Mapping[str, str]) -> str:
        """Why the loopback opening does not admit this request; ``""`` when it does."""
        if not self.open_on_loopback or self.configured:
            return "the page is not open without credentials"
        forwarded = forwarding_headers(headers)
        if forwarded:
            return f"it came through a proxy ({', '.join(forwarded)})"
        if not (client and is_loopback_host(client) and is_loopback_host(_host_name(host))):
            return "it does not come from this machine"
        return ""

    # CSRF -----------------------------------------------------------------------------------

    def csrf_token(self, session: Session) -> str:
        """The token the page's forms carry for this session."""
        return self._sign(f"csrf:{session.kind}:{session.ident}")

    def csrf_ok(self, session: Session, token: str) -> bool:
        """Whether a posted token belongs to this session."""
        expected = self.csrf_token(session).encode()
        return bool(token) and hmac.compare_digest(token.encode(), expected)
