"""Flower needs a login however it is launched, and its task list shows the job id column.

Flower is started here exactly as docs/operations.md lists it, ``celery -A worker flower``,
from a directory that holds no configuration file, with nothing but the environment.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from worker.infra.flower_guard import FLOWER_COLUMNS, check_flower_options, launching_flower
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


def test_a_login_on_the_command_line_is_accepted_and_own_columns_are_kept() -> None:
    options = SimpleNamespace(basic_auth=["ops:pw"], auth="", tasks_columns="name,uuid")
    check_flower_options(options)
    assert options.tasks_columns == "name,uuid"
    defaults = SimpleNamespace(
        basic_auth=["ops:pw"], auth="", tasks_columns="name,uuid,state,received,runtime,worker"
    )
    check_flower_options(defaults)
    assert defaults.tasks_columns == FLOWER_COLUMNS


def test_the_guard_stays_out_of_every_other_process() -> None:
    assert not launching_flower()  # pytest imported the app: no Flower, no guard
