"""`relaydance demo` and `relaydance dev` as a new user runs them: no Redis, no API key."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from simulator import VIDEO_SHA256

pytestmark = pytest.mark.integration


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RELAYDANCE_") and k != "REDIS_URL"}  # fmt: skip
    return env


def _relaydance(*args: str) -> list[str]:
    return [sys.executable, "-m", "worker.cli.main", *args]


def test_demo_renders_one_clip_with_embedded_redis_and_the_simulator(tmp_path: Path) -> None:
    done = subprocess.run(
        _relaydance("demo", "--timeout", "90"),
        cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, timeout=150,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip().splitlines()[-1])
    assert path.is_file()
    assert path.parent == tmp_path / "renders"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == VIDEO_SHA256
    assert "embedded redis-server" in done.stderr
    assert "local simulator" in done.stderr
    assert "done" in done.stderr


def test_dev_runs_the_fleet_until_interrupted_and_stops_cleanly(tmp_path: Path) -> None:
    log = (tmp_path / "dev.log").open("w+")
    # Started with SIGINT ignored, as some parents (test runners, nohup) start children:
    # Ctrl-C must still stop it.
    dev = subprocess.Popen(
        _relaydance("dev"), cwd=tmp_path, env=_clean_env(), stdout=log, stderr=subprocess.STDOUT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )  # fmt: skip
    try:
        url = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and url is None:
            time.sleep(0.2)
            found = re.search(r"embedded redis-server at (\S+)", (tmp_path / "dev.log").read_text())
            if found and "worker and beat running" in (tmp_path / "dev.log").read_text():
                url = found.group(1)
        assert url, (tmp_path / "dev.log").read_text()
        # A producer pointed at the dev stack's Redis renders through it.
        env = {**_clean_env(), "REDIS_URL": url}
        render = subprocess.run(
            _relaydance("render", "--model", "doubao-seedance-2-0-fast-260128",
                        "--prompt", "a kite over dunes", "--wait", "--timeout", "60"),
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90,
        )  # fmt: skip
        assert render.returncode == 0, render.stderr + (tmp_path / "dev.log").read_text()[-3000:]
        assert Path(render.stdout.strip()).is_file()
    finally:
        dev.send_signal(signal.SIGINT)
        code = dev.wait(timeout=40)
    assert code == 0, (tmp_path / "dev.log").read_text()[-3000:]
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
