"""``relaydance dev``'s environment, found by the project's other terminals.

``relaydance dev`` starts Redis on a random port (and the simulator when no key is set).
A second terminal that knew nothing of it used to fall back silently to 127.0.0.1:6379,
someone else's Redis. Now ``dev`` writes what it runs with to ``.relaydance/dev.env`` in
its working directory, readable only by its user, and removes it when it stops. Every
other command, run in that directory or below it, reads the file first when REDIS_URL is
not set explicitly (in the environment or ``.env``), and says which Redis it uses
whenever REDIS_URL was not set explicitly. The file is shell syntax too:
``set -a; . .relaydance/dev.env; set +a`` exports it for other tools.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from config.redis_url import DEFAULT_REDIS_URL, describe_redis_url
from config.settings import Settings, SettingsError, get_settings, load_settings

__all__ = [
    "DEV_ENV",
    "DevEnv",
    "find_dev_env",
    "read_dev_env",
    "redis_source",
    "remove_dev_env",
    "use_dev_env",
    "write_dev_env",
]

DEV_ENV = Path(".relaydance") / "dev.env"
_PID_MARK = "# relaydance dev pid "
_used: dict[str, Path] = {}  # Redis URL -> the dev.env this process took it from


@dataclass(frozen=True)
class DevEnv:
    """A ``dev.env`` file: where it is, who wrote it, and the variables it sets."""

    path: Path
    pid: int | None
    values: dict[str, str]

    def alive(self) -> bool:
        """Whether the ``relaydance dev`` that wrote it still runs."""
        if self.pid is None:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # someone else's process: it exists
        return True


def write_dev_env(directory: Path, values: Mapping[str, str], *, pid: int) -> Path:
    """Write ``values`` to ``directory/.relaydance/dev.env`` (mode 0600); its path."""
    path = directory / DEV_ENV
    path.parent.mkdir(parents=True, exist_ok=True)
    ignore = path.parent / ".gitignore"
    if not ignore.exists():  # never committed: it may hold a Redis password
        ignore.write_text("*\n")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [
        f"{_PID_MARK}{pid}",
        f"# Written by `relaydance dev` at {stamp}; removed when it stops. Other relaydance",
        "# commands in this directory use it when REDIS_URL is not set.",
        *(f"{name}={shlex.quote(value)}" for name, value in sorted(values.items())),
    ]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def remove_dev_env(path: Path, *, pid: int) -> None:
    """Remove the file if this process wrote it (a later ``dev`` may have replaced it)."""
    found = read_dev_env(path)
    if found is not None and found.pid == pid:
        path.unlink(missing_ok=True)
        try:
            path.parent.joinpath(".gitignore").unlink(missing_ok=True)
            path.parent.rmdir()
        except OSError:
            pass  # the directory holds something else too: leave it


def read_dev_env(path: Path) -> DevEnv | None:
    """Parse a ``dev.env``; None when it does not exist."""
    try:
        text = path.read_text()
    except OSError:
        return None
    pid, values = None, {}
    for line in text.splitlines():
        if line.startswith(_PID_MARK):
            pid = int(line[len(_PID_MARK) :].strip() or 0) or None
        elif line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = " ".join(shlex.split(value))
    return DevEnv(path=path, pid=pid, values=values)


def find_dev_env(start: Path | None = None) -> Path | None:
    """The nearest ``.relaydance/dev.env`` in ``start`` (the working directory) or above."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        if (directory / DEV_ENV).is_file():
            return directory / DEV_ENV
    return None


def _explicit_redis_url() -> bool:
    try:
        return load_settings().redis_url is not None
    except SettingsError:
        return True  # invalid settings: the command reports them, dev.env changes nothing


def use_dev_env() -> str | None:
    """Take Redis (and the simulator's key) from a running ``relaydance dev`` when REDIS_URL
    is not set explicitly; a note saying which Redis is used, or None when it was explicit."""
    _used.clear()
    if _explicit_redis_url():
        return None
    note = ""
    path = find_dev_env()
    found = read_dev_env(path) if path is not None else None
    if found is not None and found.alive():
        for name, value in found.values.items():
            os.environ.setdefault(name, value)
        get_settings.cache_clear()
        if "REDIS_URL" in found.values:
            _used[found.values["REDIS_URL"]] = found.path
    elif found is not None:
        note = (
            f"ignoring {found.path}: the relaydance dev that wrote it (pid {found.pid}) is gone; "
        )
    settings = get_settings()
    where = describe_redis_url(
        settings.redis_url or DEFAULT_REDIS_URL, master=settings.redis_sentinel_master
    )
    return f"relaydance: {note}using Redis at {where} ({redis_source(settings)})"


def redis_source(settings: Settings) -> str:
    """Where this process's Redis URL came from, in words."""
    if settings.redis_url is not None and settings.redis_url in _used:
        return f"from relaydance dev: {_used[settings.redis_url]}"
    if settings.redis_url is not None:
        return "REDIS_URL"
    return "the default: REDIS_URL is not set and no relaydance dev runs here"
