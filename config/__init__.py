"""Configuration: settings from the environment and the Celery configuration derived from them.

The names below load :mod:`config.settings` on first use, so a package that imports one part
(``config.parts.storage``, ``config.errors``) does not load every part.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from config.settings import Settings, SettingsError, env_name, get_settings, load_settings

__all__ = ["Settings", "SettingsError", "env_name", "get_settings", "load_settings"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from config import settings

        return getattr(settings, name)
    raise AttributeError(f"module 'config' has no attribute {name!r}")
