"""The examples' READMEs say how to install and run them, as a new user would follow them.

``pip install -e .`` leaves the web frameworks out (they are extras), so a README that only
says that picks up a system-wide Flask or Django without the fleet's dependencies. Beat
runs the sweeper, which resumes a job whose message was lost, so each example starts it.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = {"flask_app": ("flask", "flask"), "django_project": ("django", "django")}


def shell_lines(readme: str) -> list[str]:
    """The commands of the README's ``sh`` blocks, comments cut, continuations joined."""
    blocks = re.findall(r"```sh\n(.*?)```", readme, flags=re.DOTALL)
    text = "\n".join(blocks).replace("\\\n", " ")
    return [line.split("#", 1)[0].strip() for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_the_readme_installs_the_framework_extra_the_example_needs(example: str) -> None:
    extra, package = EXAMPLES[example]
    lines = shell_lines((ROOT / "examples" / example / "README.md").read_text())
    assert f"pip install -e '.[{extra}]'" in lines
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(dep.startswith(package) for dep in extras[extra])


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_the_readme_starts_a_worker_and_beat_before_the_app(example: str) -> None:
    lines = shell_lines((ROOT / "examples" / example / "README.md").read_text())
    worker = next(i for i, line in enumerate(lines) if "-A worker worker" in line)
    beat = next(i for i, line in enumerate(lines) if "-A worker beat" in line)
    app = next(i for i, line in enumerate(lines) if "runserver" in line or "flask --app" in line)
    assert worker < app and beat < app
    module = re.search(r"-I (\S+)", lines[worker])
    assert module is not None
    assert (ROOT / (module.group(1).replace(".", "/") + ".py")).is_file()
