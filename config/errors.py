"""The one error of configuration, light enough for any package to import."""

from __future__ import annotations

__all__ = ["SettingsError"]


class SettingsError(ValueError):
    """Invalid configuration; the message names each environment variable and the fix."""
