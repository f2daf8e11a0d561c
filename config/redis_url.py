"""Reading the Redis URL setting: a server, or a list of Redis Sentinels."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

__all__ = ["SentinelUrl", "is_sentinel", "parse_sentinel_url"]


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
