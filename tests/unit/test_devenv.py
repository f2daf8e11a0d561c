"""``.relaydance/dev.env``: what ``relaydance dev`` leaves for the project's other terminals,
and how every other command reads it: first, only when REDIS_URL is not set explicitly,
only while that ``dev`` runs, and always saying which Redis it uses.

``relaydance dev`` writing and removing the file, and a second terminal rendering through
it, run for real in tests/integration/test_devstack.py.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from config.settings import get_settings
from worker.cli.devenv import (
    DEV_ENV,
    find_dev_env,
    read_dev_env,
    redis_source,
    remove_dev_env,
    use_dev_env,
    write_dev_env,
)
from worker.cli.main import main
from worker.infra.redis_server import free_port

VALUES = {"REDIS_URL": "redis://127.0.0.1:40123/0", "RELAYDANCE_API_KEY": "sk-local-simulator",
          "RELAYDANCE_BASE_URL": "http://127.0.0.1:40124/v1"}  # fmt: skip


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty project directory as the working directory, no Redis or key set."""
    for name in [n for n in os.environ if n.startswith("RELAYDANCE_")] + ["REDIS_URL"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    saved = dict(os.environ)
    yield tmp_path
    os.environ.clear()  # what a test's dev.env set goes too, not only what monkeypatch did
    os.environ.update(saved)
    monkeypatch.undo()
    from tests.fleet import _rebind

    _rebind()  # settings, engine and Celery app of this process as they were


def _dead_pid() -> int:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


def test_the_file_is_private_ignored_by_git_and_shell_readable(project: Path) -> None:
    path = write_dev_env(project, {**VALUES, "X": "a b;c"}, pid=os.getpid())
    assert path == project / DEV_ENV
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it may hold a Redis password
    assert (path.parent / ".gitignore").read_text() == "*\n"
    shell = subprocess.run(["sh", "-c", f"set -a; . {path}; echo \"$X|$REDIS_URL\""],
                           capture_output=True, text=True, check=True)  # fmt: skip
    assert shell.stdout.strip() == "a b;c|redis://127.0.0.1:40123/0"
    found = read_dev_env(path)
    assert found is not None and found.pid == os.getpid() and found.values["X"] == "a b;c"


def test_another_terminal_below_the_project_takes_redis_and_the_key_and_says_so(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_dev_env(project, VALUES, pid=os.getpid())
    (project / "shots" / "day1").mkdir(parents=True)
    monkeypatch.chdir(project / "shots" / "day1")
    assert find_dev_env() == project / DEV_ENV
    note = use_dev_env()
    settings = get_settings()
    assert settings.redis_url == VALUES["REDIS_URL"]
    assert settings.keys()["default"].get_secret_value() == "sk-local-simulator"
    assert note == (f"relaydance: using Redis at 127.0.0.1:40123 db 0 (from relaydance dev: "
                    f"{project / DEV_ENV})")  # fmt: skip


def test_an_explicit_redis_url_wins_and_nothing_is_said(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_dev_env(project, VALUES, pid=os.getpid())
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6390/1")
    assert use_dev_env() is None
    assert get_settings().redis_url == "redis://127.0.0.1:6390/1"
    assert "RELAYDANCE_API_KEY" not in os.environ
    assert redis_source(get_settings()) == "REDIS_URL"


def test_a_redis_url_in_dot_env_is_explicit_too(project: Path) -> None:
    write_dev_env(project, VALUES, pid=os.getpid())
    (project / ".env").write_text("REDIS_URL=redis://127.0.0.1:6391/0\n")
    assert use_dev_env() is None
    assert get_settings().redis_url == "redis://127.0.0.1:6391/0"


def test_a_file_left_by_a_dev_that_is_gone_is_ignored_and_the_default_is_named(
    project: Path,
) -> None:
    write_dev_env(project, VALUES, pid=_dead_pid())
    note = use_dev_env()
    assert get_settings().redis_url is None
    assert note is not None and f"ignoring {project / DEV_ENV}" in note
    assert "using Redis at 127.0.0.1:6379 db 0 (the default: REDIS_URL is not set" in note


def test_with_no_dev_running_the_default_is_never_used_silently(project: Path) -> None:
    note = use_dev_env()
    assert note == ("relaydance: using Redis at 127.0.0.1:6379 db 0 (the default: REDIS_URL is "
                    "not set and no relaydance dev runs here)")  # fmt: skip


def test_every_command_that_uses_redis_says_which_one_it_uses(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()  # nothing listens: the command then says Redis is unreachable
    write_dev_env(project, {**VALUES, "REDIS_URL": f"redis://127.0.0.1:{port}/0"},
                  pid=os.getpid())  # fmt: skip
    result = CliRunner().invoke(main, ["limits"])
    assert result.output.splitlines()[0] == (
        f"relaydance: using Redis at 127.0.0.1:{port} db 0 (from relaydance dev: "
        f"{project / DEV_ENV})"
    )
    assert f"Redis at 127.0.0.1:{port} is unreachable" in result.output
    models = CliRunner().invoke(main, ["models"])
    assert "using Redis" not in models.output  # a command that uses no Redis says nothing


def test_dev_removes_only_the_file_it_wrote(project: Path) -> None:
    path = write_dev_env(project, VALUES, pid=os.getpid())
    remove_dev_env(path, pid=os.getpid() + 1)  # another dev's: kept
    assert path.exists()
    remove_dev_env(path, pid=os.getpid())
    assert not path.exists() and not path.parent.exists()


def test_a_second_dev_in_the_same_directory_is_refused(project: Path) -> None:
    write_dev_env(project, VALUES, pid=os.getpid())
    result = CliRunner().invoke(main, ["dev"])
    assert result.exit_code == 2
    assert f"relaydance dev already runs in this directory (pid {os.getpid()})" in result.output
