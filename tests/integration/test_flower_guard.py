"""Flower needs a login however it is launched, and its task list shows the job id column.

Flower is started here exactly as docs/operations.md lists it, ``celery -A worker flower``,
from a directory that holds no configuration file, with nothing but the environment; and
by the Procfile's command, whose guard refuses a missing login but keeps the fleet up.
The guard's option check itself is tested in-process in tests/unit/test_flower_options.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from honcho.environ import parse_procfile  # type: ignore[import-untyped]

from worker.infra.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
LOGIN = ("ops", "a-long-flower-password")


def _flower(tmp_path: Path, redis_url: str, *args: str, **env: str) -> subprocess.Popen[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWER_", "RELAYDANCE_"))}
    clean.update(env, REDIS_URL=redis_url, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker", "flower", *args],
        cwd=tmp_path,  # no flowerconfig.py here: the app itself must refuse
        env=clean,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _get(url: str, **kwargs: object) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=2.0, **kwargs)  # type: ignore[arg-type]
    except httpx.TransportError:
        return None


@pytest.fixture
def bare_flower(tmp_path: Path, redis_url: str) -> Iterator[str]:
    port = free_port()
    flower = _flower(tmp_path, redis_url, f"--port={port}", "--address=127.0.0.1",
                     FLOWER_BASIC_AUTH=":".join(LOGIN))  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):  # bounded: about 30 s at most
            if _get(base + "/api/workers") is not None or flower.poll() is not None:
                break
            time.sleep(0.1)
        yield base
    finally:
        if flower.poll() is None:
            os.killpg(flower.pid, signal.SIGTERM)
        flower.communicate(timeout=15)


def test_flower_started_bare_answers_401_without_credentials(bare_flower: str) -> None:
    for path in ("/", "/tasks", "/api/tasks", "/api/workers"):
        anonymous = _get(bare_flower + path)
        assert anonymous is not None, "flower did not start"
        assert anonymous.status_code == 401, path
    logged_in = _get(bare_flower + "/api/workers", auth=LOGIN)
    assert logged_in is not None and logged_in.status_code == 200


def test_flowers_own_metrics_and_healthcheck_need_the_login_too(bare_flower: str) -> None:
    for path in ("/metrics", "/healthcheck"):
        anonymous = _get(bare_flower + path)
        assert anonymous is not None, "flower did not start"
        assert anonymous.status_code == 401, path
        assert "flower_" not in anonymous.text and anonymous.text != "OK", path
        wrong = _get(bare_flower + path, auth=(LOGIN[0], "not-the-password"))
        assert wrong is not None and wrong.status_code == 401, path
        logged_in = _get(bare_flower + path, auth=LOGIN)
        assert logged_in is not None and logged_in.status_code == 200, path
    metrics = _get(bare_flower + "/metrics", auth=LOGIN)
    assert metrics is not None and "flower_events_total" in metrics.text


def test_flowers_task_list_shows_the_kwargs_column_that_carries_the_job_id(
    bare_flower: str,
) -> None:
    page = _get(bare_flower + "/tasks", auth=LOGIN)
    assert page is not None and page.status_code == 200
    assert 'data-column="kwargs"' in page.text


@pytest.mark.parametrize("login", [None, "", "no-colon", "user:", ":password"])
def test_flower_started_bare_without_a_login_refuses_to_start(
    tmp_path: Path, redis_url: str, login: str | None
) -> None:
    port = free_port()
    env = {} if login is None else {"FLOWER_BASIC_AUTH": login}
    flower = _flower(tmp_path, redis_url, f"--port={port}", "--address=127.0.0.1", **env)
    try:
        _, err = flower.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(flower.pid, signal.SIGKILL)
        flower.communicate(timeout=5)
        pytest.fail("flower started without a login")
    assert flower.returncode == 2
    assert "FLOWER_BASIC_AUTH" in err
    assert _get(f"http://127.0.0.1:{port}/healthcheck") is None


# --- Started by the Procfile's command, as honcho and compose run it -----------------------


def _start_flower(extra_env: dict[str, str], redis_url: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWER_")}
    env.update(extra_env, REDIS_URL=redis_url)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return subprocess.Popen(
        ["sh", "-c", parse_procfile((ROOT / "Procfile").read_text()).processes["flower"]],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # one process group: the guard's shell and Flower
    )


def _stop(process: subprocess.Popen[str]) -> str:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        _, err = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        _, err = process.communicate(timeout=5)
    return err


def test_flower_starts_behind_basic_auth(redis_url: str) -> None:
    port = free_port()
    login = ("ops", "a-long-test-password")
    flower = _start_flower(
        {"FLOWER_BASIC_AUTH": ":".join(login), "FLOWER_PORT": str(port)}, redis_url
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):  # bounded: about 30 s at most
            if _get(base + "/healthcheck") is not None or flower.poll() is not None:
                break
            time.sleep(0.1)
        anonymous = _get(base + "/api/workers")
        logged_in = _get(base + "/api/workers", auth=login)
        wrong = _get(base + "/", auth=("ops", "guess"))
    finally:
        err = _stop(flower)
    assert anonymous is not None, f"flower did not start: {err[-2000:]}"
    assert anonymous.status_code == 401
    assert wrong is not None and wrong.status_code == 401
    assert logged_in is not None and logged_in.status_code == 200
    assert "a-long-test-password" not in err


@pytest.mark.parametrize("login", ["", "no-colon", ":empty-user", "user:"])
def test_flower_refuses_to_start_without_a_login_and_keeps_the_fleet_up(
    login: str, redis_url: str
) -> None:
    port = free_port()
    env = {"FLOWER_PORT": str(port)} | ({"FLOWER_BASIC_AUTH": login} if login else {})
    flower = _start_flower(env, redis_url)
    try:
        assert flower.stderr is not None
        message = flower.stderr.readline()  # the guard writes one line, then idles
        # Idling, not exiting: honcho stops every process when one exits.
        still_running = flower.poll() is None
        listening = _get(f"http://127.0.0.1:{port}/healthcheck") is not None
    finally:
        _stop(flower)
    assert "FLOWER_BASIC_AUTH" in message
    assert still_running
    assert not listening
