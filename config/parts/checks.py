"""Checks that more than one part of the settings applies to its values."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

__all__ = ["absolute_url", "stripped_secret"]


def absolute_url(value: str | None) -> str | None:
    """``value`` without its trailing slash, if it is an absolute http(s) URL."""
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        shown = f"{parts.scheme}://{parts.hostname or ''}"
        raise ValueError(
            f"must be an absolute http(s) URL such as https://host/path, got {shown!r}"
        )
    return value.rstrip("/")


def stripped_secret(value: Any) -> Any:
    """A secret's text without the newline a file often ends in; empty means unset."""
    if isinstance(value, str):
        return value.strip() or None
    return value
