"""What the deployment tests read: the Procfile, docker-compose.yml, .env.example and the settings' names."""

from __future__ import annotations

import importlib.util
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from honcho.environ import parse_procfile

from config.settings import Settings, env_name

ROOT = Path(__file__).resolve().parents[1]


# Environment names the deployment files may use that are not settings: each is read by a
# process command, not by config/settings.py, and each is documented in .env.example.
ALLOWED_EXTRA_ENV = {
    "FLOWER_BASIC_AUTH": "Flower's login (Flower reads FLOWER_* itself); required to start it",
    "FLOWER_ADDRESS": "Flower's listening address (loopback unless set)",
    "FLOWER_PORT": "Flower's port",
    "PORT": "the web process's port; Heroku-style hosts and honcho set it",
    "RELAYDANCE_WORKER_CONCURRENCY": "threads per worker process (a Celery CLI option)",
}
APP_SERVICES = ("worker", "beat", "flower", "web")
SECRET_NAME = re.compile(r"KEY|SECRET|AUTH|PASSWORD|TOKEN")
ENV_REF = re.compile(r"\$\$?\{?([A-Za-z_][A-Za-z0-9_]*)")
ENV_LINE = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$")


def settings_env_names() -> set[str]:
    """Every environment name that sets a field, aliases included."""
    names = {env_name(field) for field in Settings.model_fields}
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        names.update(getattr(alias, "choices", None) or ([alias] if alias else []))
    return {str(n) for n in names}


def procfile() -> dict[str, str]:
    """Process name -> command, parsed as honcho parses it."""
    return dict(parse_procfile((ROOT / "Procfile").read_text()).processes)


def compose() -> dict[str, Any]:
    """docker-compose.yml with its YAML anchors and merge keys resolved."""
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def env_example() -> dict[str, str]:
    """Every NAME=value line of .env.example, commented out or not."""
    found = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = ENV_LINE.match(line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def interpolate(text: str, env: dict[str, str]) -> str:
    """Expand $NAME, ${NAME} and ${NAME:-default} as compose and sh do; $$ is a dollar."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1) or match.group(3), match.group(2)
        return env.get(name) or (default or "")

    pattern = r"\$\$|\$\{([A-Za-z_]\w*)(?::?-([^}]*))?\}|\$([A-Za-z_]\w*)"
    return re.sub(pattern, one, text)


def normalized(command: str | list[str], *, compose_file: bool) -> list[str]:
    """A command as argv with every variable written $NAME (compose escapes $ as $$)."""
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    out = []
    for arg in argv:
        if compose_file:
            arg = arg.replace("$$", "$")
        arg = re.sub(r"\$\{([A-Za-z_]\w*)(?::?-[^}]*)?\}", r"$\1", arg)
        out.append(" ".join(arg.split()))
    return out


def strings_in(node: Any) -> Iterator[str]:
    """Every string key and value in a parsed YAML tree."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from strings_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings_in(item)


def load_config_table() -> ModuleType:
    """scripts/config_table.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("config_table", ROOT / "scripts/config_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def listen_port(command: str | list[str], env: dict[str, str]) -> str:
    """The port a service's command listens on, with compose's and the shell's expansion."""
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    resolved = [interpolate(arg.replace("$$", "$"), env) for arg in argv]
    if resolved[0] == "sh":  # the flower guard: the port is inside the script
        match = re.search(r"--port=\"?(\d+)", resolved[2])
        assert match is not None
        return match.group(1)
    return resolved[resolved.index("--port") + 1]
