"""Who may see the jobs page, and proof that a POST came from its own form.

The page shows prompts, spend and clips, and its buttons cancel paid work, so it is never
open by default. Credentials come from the settings: ``RELAYDANCE_UI_TOKEN`` (typed once
into the sign-in form, which sets a signed session cookie; scripts send ``Authorization:
Bearer``) and/or ``RELAYDANCE_UI_USER`` + ``RELAYDANCE_UI_PASSWORD`` (HTTP Basic). With
none set, the page opens only to a browser on the same machine, and only when the server
itself listens on a loopback address (``relaydance web`` decides that from its bind;
Django and Flask mounts always need credentials); the Host header must then be a loopback
name too, so that a public page cannot reach it through DNS rebinding.

Every key used to sign is derived from the credentials, so changing them signs everyone
out. A POST needs a CSRF token that is an HMAC of the session (the cookie, the Basic
user, or the bearer) under that key; the session cookie is ``SameSite=Strict`` as well.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import secrets
import time
from dataclasses import dataclass, field

from config.settings import Settings

__all__ = ["COOKIE", "Credentials", "Session", "is_loopback_host"]

COOKIE = "rd_ui"
SESSION_SECONDS = 12 * 3600
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def is_loopback_host(host: str) -> bool:
    """Whether a bind address or a Host name points at this machine only."""
    name = host.strip().lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


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
class Credentials:
    """The configured credentials, or the loopback-only opening when there are none."""

    token: str | None = None
    user: str | None = None
    password: str | None = None
    open_on_loopback: bool = False
    _local_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, *, loopback_bind: bool = False) -> Credentials:
        """The settings' credentials; ``loopback_bind`` allows the local opening."""
        token = settings.ui_token.get_secret_value() if settings.ui_token else None
        password = settings.ui_password.get_secret_value() if settings.ui_password else None
        found = cls(token=token, user=settings.ui_user, password=password)
        if found.configured:
            return found
        return cls(open_on_loopback=loopback_bind)

    @property
    def configured(self) -> bool:
        """Whether any credential is set."""
        return bool(self.token or (self.user and self.password))

    @property
    def basic(self) -> bool:
        """Whether HTTP Basic is on (the browser then asks for a user and password)."""
        return bool(self.user and self.password)

    def _key(self) -> bytes:
        if not self.configured:
            return self._local_key  # one process serves the local opening
        material = "\0".join(("relaydance-ui", self.token or "", self.user or "",
                              self.password or ""))  # fmt: skip
        return hashlib.sha256(material.encode()).digest()

    def _sign(self, purpose: str) -> str:
        digest = hmac.new(self._key(), purpose.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    # Sessions -----------------------------------------------------------------------------

    def check_token(self, token: str) -> bool:
        """Whether a typed or bearer token is the configured one (constant time)."""
        return bool(self.token) and hmac.compare_digest(token.encode(), str(self.token).encode())

    def new_cookie(self, *, now: float | None = None) -> str:
        """A session cookie value: when it was issued, and a signature of that."""
        issued = f"{int(time.time() if now is None else now)}.{secrets.token_hex(8)}"
        return f"{issued}.{self._sign('session:' + issued)}"

    def session(
        self, *, authorization: str, cookie: str, client: str | None, host: str
    ) -> Session | None:
        """The visitor's session, or None when they proved nothing."""
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and self.check_token(value.strip()):
            return Session("bearer", "bearer")
        if scheme.lower() == "basic" and self.basic:
            user = self._basic_user(value.strip())
            if user is not None:
                return Session("basic", user)
        if cookie and self.configured and self._cookie_ok(cookie):
            return Session("cookie", cookie)
        if self.open_on_loopback and not self.configured:
            if client and is_loopback_host(client) and is_loopback_host(_host_name(host)):
                return Session("local", "local")
        return None

    def _basic_user(self, encoded: str) -> str | None:
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        ok_user = hmac.compare_digest(user.encode(), str(self.user).encode())
        ok_password = hmac.compare_digest(password.encode(), str(self.password).encode())
        return user if ok_user and ok_password else None

    def _cookie_ok(self, cookie: str, *, now: float | None = None) -> bool:
        issued, _, signature = cookie.rpartition(".")
        stamp = issued.partition(".")[0]
        if not stamp.isdigit() or not hmac.compare_digest(
            signature.encode(), self._sign("session:" + issued).encode()
        ):
            return False
        age = (time.time() if now is None else now) - int(stamp)
        return 0 <= age < SESSION_SECONDS

    # CSRF ---------------------------------------------------------------------------------

    def csrf_token(self, session: Session) -> str:
        """The token the page's forms carry for this session."""
        return self._sign(f"csrf:{session.kind}:{session.ident}")

    def csrf_ok(self, session: Session, token: str) -> bool:
        """Whether a posted token belongs to this session."""
        expected = self.csrf_token(session).encode()
        return bool(token) and hmac.compare_digest(token.encode(), expected)
