"""What the settings tests share: secrets to look for, an empty environment, and a refusal's message."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.settings import SettingsError, get_settings, load_settings

SECRET = "sk-live-0123456789abcdef"


OTHER_SECRET = "sk-tenant-fedcba9876543210"


HOOK_SECRET = "whsec-very-private-42-YupXoteT7P2iKQbs6sDxUwyiwbezROdF"


def empty_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No RELAYDANCE_* or REDIS_URL variable, an empty working directory, settings read anew."""
    for name in list(os.environ):
        if name.upper().startswith("RELAYDANCE_") or name.upper() == "REDIS_URL":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def settings_error(**env: str) -> str:
    """The SettingsError message for these variables (names given without the prefix)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        with pytest.raises(SettingsError) as info:
            load_settings()
    return str(info.value)
