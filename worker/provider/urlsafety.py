"""SSRF rules for provider-supplied URLs, and the one way a URL is shown in logs.

A provider URL is untrusted: it may point at the metadata service, at Redis on the
loopback, or at anything on the private network. :func:`check_url` refuses every
address that is not globally routable, whatever form it is written in (a name, a
literal IPv4 or IPv6 address, an IPv4-mapped or 6to4 IPv6 address, ``2130706433``).

A name is resolved once: :func:`check_url` returns the addresses it checked, and
:func:`connect_only_to` pins the connection to them, so :class:`AddressGuard` (the network
backend of the download client) connects to an address that passed the rules and never
asks the resolver again. A name that answers a public address to the check and loopback
to the connect (DNS rebinding) therefore never reaches loopback. Without a pin the guard
resolves and checks by itself. TLS still runs against the host name (SNI, certificate).

Signed URLs carry their credentials in the query string, so :func:`redact_url`
shows ``scheme://host/path`` only, and every message here goes through it.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpcore
import httpx

from worker.errors import TransportFailure, UnsafeUrl

__all__ = ["AddressGuard", "check_url", "connect_only_to", "redact_url", "refusal_reason"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_PATH_LIMIT = 80

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_METADATA = ipaddress.ip_address("169.254.169.254")
# Ranges the standard library still calls global on some Python versions, yet no
# provider CDN lives in: IETF protocol assignments and the retired 6to4 relay anycast.
_EXTRA_REFUSED = (
    ipaddress.ip_network("192.0.0.0/24"),
    ipaddress.ip_network("192.88.99.0/24"),
)
# Deprecated site-local IPv6 (RFC 3879): still routed inside some networks.
_SITE_LOCAL = ipaddress.ip_network("fec0::/10")
_NAT64 = (
    ipaddress.ip_network("64:ff9b::/96"),
    ipaddress.ip_network("64:ff9b:1::/48"),
)


def redact_url(url: str) -> str:
    """``scheme://host[:port]/path`` of a URL: no credentials, query or fragment."""
    try:
        parts = urlsplit(str(url))
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparseable url>"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    path = parts.path
    if len(path) > _PATH_LIMIT:
        path = path[: _PATH_LIMIT - 3] + "..."
    scheme = parts.scheme or "?"
    return f"{scheme}://{netloc}{path}"


def _embedded_ipv4(addr: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses a packet to ``addr`` may end up at (mapped, 6to4, Teredo, NAT64)."""
    found: list[ipaddress.IPv4Address] = []
    if addr.ipv4_mapped is not None:
        found.append(addr.ipv4_mapped)
    if addr.sixtofour is not None:
        found.append(addr.sixtofour)
    if addr.teredo is not None:
        found.extend(addr.teredo)
    if any(addr in net for net in _NAT64):
        found.append(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
    return found


def refusal_reason(addr: IPAddress) -> str | None:
    """Why ``addr`` must not be fetched from, or None when it is globally routable."""
    if addr.is_unspecified:
        return "an unspecified address"
    if addr.is_loopback:
        return "a loopback address"
    if addr == _METADATA:
        return "the cloud metadata address"
    if addr.is_link_local:
        return "a link-local address"
    if addr.is_multicast:
        return "a multicast address"
    if isinstance(addr, ipaddress.IPv4Address) and addr in _CGNAT:
        return "a shared (CGNAT) address"
    if isinstance(addr, ipaddress.IPv6Address):
        for inner in _embedded_ipv4(addr):
            reason = refusal_reason(inner)
            if reason is not None:
                return f"{reason} (embedded in an IPv6 address)"
    if isinstance(addr, ipaddress.IPv6Address) and addr in _SITE_LOCAL:
        return "a site-local address"
    if addr.is_reserved:
        return "a reserved address"
    if addr.is_private or (
        isinstance(addr, ipaddress.IPv4Address) and any(addr in net for net in _EXTRA_REFUSED)
    ):
        return "a private address"
    if not addr.is_global:
        return "an address that is not globally routable"
    return None


def _parse_ip(text: str) -> IPAddress | None:
    # getaddrinfo may append an IPv6 zone ("fe80::1%eth0"); the zone does not change the class.
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def _resolve(host: str, port: int, shown: str) -> list[IPAddress]:
    literal = _parse_ip(host)
    if literal is not None:
        return [literal]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError:
        raise UnsafeUrl(f"url host cannot be encoded: {shown}") from None
    except OSError as exc:
        # A resolver failure says nothing about the URL itself: let the caller retry.
        raise TransportFailure(f"cannot resolve host of {shown}: {exc}") from None
    addrs: list[IPAddress] = []
    for info in infos:
        parsed = _parse_ip(str(info[4][0]))
        if parsed is None:
            raise UnsafeUrl(f"url host resolves to an unrecognised address: {shown}")
        addrs.append(parsed)
    if not addrs:
        raise TransportFailure(f"host of {shown} resolves to no address")
    return addrs


def check_url(url: str, *, allow_local: bool) -> tuple[IPAddress, ...]:
    """Refuse ``url`` unless it is https to a host whose every address is global.

    Returns the addresses checked (none with ``allow_local``), which
    :func:`connect_only_to` pins the connection to. With ``allow_local`` (local
    development only) http and any address are accepted.

    Raises:
        UnsafeUrl: the scheme, host or an address is refused.
        TransportFailure: the host name could not be resolved right now.
    """
    shown = redact_url(url)
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise UnsafeUrl(f"malformed url: {shown}") from None
    allowed = ("https", "http") if allow_local else ("https",)
    if parsed.scheme not in allowed:
        raise UnsafeUrl(f"url scheme must be {' or '.join(allowed)}: {shown}")
    host = parsed.raw_host.decode("ascii", "replace")
    if not host:
        raise UnsafeUrl(f"url has no host: {shown}")
    if allow_local:
        return ()
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return _checked(_resolve(host, port, shown), shown)


def _checked(addrs: Iterable[IPAddress], shown: str) -> tuple[IPAddress, ...]:
    """``addrs`` when every one is allowed; else UnsafeUrl naming the first refused."""
    found = tuple(addrs)
    for addr in found:
        reason = refusal_reason(addr)
        if reason is not None:
            raise UnsafeUrl(f"url host resolves to {reason} ({addr}): {shown}")
    return found


@dataclass(frozen=True)
class _Policy:
    allow_local: bool
    pins: dict[tuple[str, int], tuple[IPAddress, ...]] = field(default_factory=dict)


_policy: contextvars.ContextVar[_Policy | None] = contextvars.ContextVar(
    "relaydance_connect_policy", default=None
)


@contextlib.contextmanager
def connect_only_to(url: str, addrs: tuple[IPAddress, ...], *, allow_local: bool) -> Iterator[None]:
    """Inside the block, :class:`AddressGuard` connects ``url``'s host only to ``addrs``.

    ``addrs`` is what :func:`check_url` returned for ``url``; with ``allow_local`` the
    guard lets every connection through (local development).
    """
    pins: dict[tuple[str, int], tuple[IPAddress, ...]] = {}
    if addrs:
        parsed = httpx.URL(url)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        pins[(parsed.raw_host.decode("ascii", "replace"), port)] = addrs
    token = _policy.set(_Policy(allow_local=allow_local, pins=pins))
    try:
        yield
    finally:
        _policy.reset(token)


class AddressGuard(httpcore.NetworkBackend):
    """A network backend that connects only to addresses the SSRF rules allow.

    It connects to the pinned addresses of the current :func:`connect_only_to` block, or
    resolves the host once and checks every address; then it connects to an IP, never
    to the name, so the resolver gets no second say. Outside a block it is strict.
    """

    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        policy = _policy.get()
        if policy is not None and policy.allow_local:
            return self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        shown = f"{host}:{port}"
        addrs = policy.pins.get((host, port)) if policy is not None else None
        if not addrs:
            addrs = _checked(_resolve(host, port, shown), shown)
        failure: httpcore.ConnectError | None = None
        for addr in addrs:  # in the resolver's order, as a plain connect would
            try:
                return self._inner.connect_tcp(
                    str(addr), port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                failure = exc
        assert failure is not None
        raise failure

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise UnsafeUrl("downloads never connect to a unix socket")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)
