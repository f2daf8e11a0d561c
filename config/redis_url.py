"""Reading the Redis URL setting: a server, or a list of Redis Sentinels."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

__all__ = [
    "DEFAULT_REDIS_URL",
    "SentinelUrl",
    "describe_redis_url",
    "is_sentinel",
    "parse_sentinel_url",
    "url_without_secrets",
]

# Used only when REDIS_URL is unset, and then always said out loud (never silently).
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True)
class SentinelUrl:
    """The parts of a ``sentinel://`` URL."""

    sentinels: list[tuple[str, int]]
    password: str | None
    db: int


def is_sentinel(url: str) -> bool:
    """Whether ``url`` names Redis Sentinels rather than a server."""
    return urlsplit(url.split(";", 1)[0].strip()).scheme == "sentinel"


def parse_sentinel_url(url: str) -> SentinelUrl:
    """Split a ``sentinel://...;sentinel://...`` URL into sentinels, password and db."""
    parts = [urlsplit(piece.strip()) for piece in url.split(";") if piece.strip()]
    sentinels = [(p.hostname or "127.0.0.1", p.port or 26379) for p in parts]
    first = parts[0]
    password = unquote(first.password) if first.password else None
    db = int(first.path.strip("/") or 0)
    return SentinelUrl(sentinels=sentinels, password=password, db=db)


def describe_redis_url(url: str, *, master: str | None = None) -> str:
    """Where a Redis URL points, for people: host, port and db, never a user or password."""
    if is_sentinel(url):
        parsed = parse_sentinel_url(url)
        hosts = ", ".join(f"{host}:{port}" for host, port in parsed.sentinels)
        return f"sentinel master {master or '?'} via {hosts} db {parsed.db}"
    parts = urlsplit(url)
    if parts.scheme in ("unix", "redis+socket"):
        db = (parts.query.partition("db=")[2].split("&", 1)[0]) or "0"
        return f"unix socket {parts.path} db {db}"
    db_text = parts.path.strip("/") or "0"
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379} db {db_text}"


def url_without_secrets(url: str, *, master: str | None = None) -> str:
    """The URL to show people: scheme, host, port and db, never a user or password."""
    if is_sentinel(url):
        return describe_redis_url(url, master=master)
    parts = urlsplit(url)
    if parts.scheme in ("unix", "redis+socket"):
        return f"{parts.scheme}://{parts.path}"
    db = parts.path.strip("/") or "0"
    return f"{parts.scheme}://{parts.hostname or '127.0.0.1'}:{parts.port or 6379}/{db}"
