"""`relaydance demo` and `relaydance dev` as a new user runs them: no Redis, no API key.

A second terminal finds the dev stack through ``.relaydance/dev.env`` (no REDIS_URL set
there) and says which Redis it uses; the stack outlives a restart of its Redis with
nothing restarting it; nothing is left behind in the temporary directory on exit.
"""

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
from worker.infra.redis_server import RedisServer

pytestmark = pytest.mark.integration


def _clean_env(tmp: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RELAYDANCE_") and k != "REDIS_URL"}  # fmt: skip
    if tmp is not None:  # a temporary directory of its own, to see what is left in it
        tmp.mkdir(exist_ok=True)
        env["TMPDIR"] = str(tmp)
    return env


def _left_behind(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.iterdir() if p.name.startswith("relaydance-"))


def _wait_for_log(log: Path, *needles: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text()
        if all(n in text for n in needles):
            return text
        time.sleep(0.2)
    raise AssertionError(f"{needles} not in {log}: {log.read_text()[-3000:]}")


def _relaydance(*args: str) -> list[str]:
    return [sys.executable, "-m", "worker.cli.main", *args]


def test_demo_renders_one_clip_with_embedded_redis_and_the_simulator(tmp_path: Path) -> None:
    done = subprocess.run(
        _relaydance("demo", "--timeout", "90"),
        cwd=tmp_path, env=_clean_env(tmp_path / "tmp"), capture_output=True, text=True,
        timeout=150,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip().splitlines()[-1])
    assert path.is_file()
    assert path.parent == tmp_path / "renders"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == VIDEO_SHA256
    assert "embedded redis-server" in done.stderr
    assert "local simulator" in done.stderr
    assert "done" in done.stderr
    assert _left_behind(tmp_path / "tmp") == []  # no relaydance-demo-*, -dev-*, -redis-*


def test_dev_runs_the_fleet_and_a_second_terminal_finds_it_then_it_stops_cleanly(
    tmp_path: Path,
) -> None:
    log = tmp_path / "dev.log"
    # Started with SIGINT ignored, as some parents (test runners, nohup) start children:
    # Ctrl-C must still stop it.
    dev = subprocess.Popen(
        _relaydance("dev"), cwd=tmp_path, env=_clean_env(tmp_path / "tmp"),
        stdout=log.open("w"), stderr=subprocess.STDOUT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )  # fmt: skip
    env_file = tmp_path / ".relaydance" / "dev.env"
    try:
        text = _wait_for_log(log, "embedded redis-server at", "worker and beat running")
        url = re.search(r"embedded redis-server at (\S+)", text).group(1)  # type: ignore[union-attr]
        assert f"REDIS_URL={url}" in env_file.read_text()
        # Another terminal, in a folder of the project, with no REDIS_URL: it finds the stack.
        (tmp_path / "shots").mkdir()
        render = subprocess.run(
            _relaydance("render", "--model", "doubao-seedance-2-0-fast-260128",
                        "--prompt", "a kite over dunes", "--wait", "--timeout", "60"),
            cwd=tmp_path / "shots", env=_clean_env(), capture_output=True, text=True, timeout=90,
        )  # fmt: skip
        assert render.returncode == 0, render.stderr + log.read_text()[-3000:]
        assert Path(render.stdout.strip()).is_file()
        port = url.rsplit(":", 1)[1].split("/")[0]
        assert render.stderr.startswith(
            f"relaydance: using Redis at 127.0.0.1:{port} db 0 (from relaydance dev: {env_file})"
        ), render.stderr
        doctor = subprocess.run(_relaydance("doctor"), cwd=tmp_path, env=_clean_env(),
                                capture_output=True, text=True, timeout=60)  # fmt: skip
        checks = {line.split()[1]: line for line in doctor.stdout.splitlines()}
        assert [line for line in checks.values() if line.startswith("FAIL")] == [], doctor.stdout
        assert checks["keys"].startswith("PASS")  # the simulator's key, from dev.env
        assert checks["persistence"].startswith("PASS")  # the embedded Redis keeps a file
        assert checks["sweep"].split()[0] in ("PASS", "WARN"), doctor.stdout  # WARN: starting
    finally:
        dev.send_signal(signal.SIGINT)
        code = dev.wait(timeout=40)
    assert code == 0, log.read_text()[-3000:]
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
    assert not env_file.exists() and not env_file.parent.exists()
    assert _left_behind(tmp_path / "tmp") == []


@pytest.mark.timeout(180)
def test_dev_outlives_a_restart_of_its_redis_with_nothing_restarting_it(tmp_path: Path) -> None:
    with RedisServer(appendonly=True, appendfsync="always") as server:
        env = {**_clean_env(), "REDIS_URL": server.url}
        log = tmp_path / "dev.log"
        dev = subprocess.Popen(_relaydance("dev"), cwd=tmp_path, env=env,
                               stdout=log.open("w"), stderr=subprocess.STDOUT)  # fmt: skip
        try:
            _wait_for_log(log, "worker and beat running", " ready.")
            server.restart(crash=True, down_for=5.0)
            render = subprocess.run(
                _relaydance("render", "--model", "doubao-seedance-2-0-fast-260128",
                            "--prompt", "after the restart", "--wait", "--timeout", "90"),
                cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert render.returncode == 0, render.stderr + log.read_text()[-3000:]
            assert dev.poll() is None, log.read_text()[-3000:]  # the stack lived on
        finally:
            dev.send_signal(signal.SIGINT)
            code = dev.wait(timeout=40)
    assert code == 0, log.read_text()[-3000:]
    assert "beat raised exception" not in log.read_text()


def test_render_wait_on_a_job_nobody_takes_says_so_and_exits_3(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from tasks import enqueue_render
    from tests.fleet import fleet_env, point_this_process_at
    from worker.cli.follow import follow_job

    env = fleet_env(redis_url=redis_url, sim_url="http://127.0.0.1:9/v1", output_dir=tmp_path)
    point_this_process_at(env, monkeypatch)  # a Redis no worker listens to
    job_id = enqueue_render({"model": "doubao-seedance-2-0-fast-260128", "prompt": "alone"})
    code = follow_job(job_id, timeout=2.5, as_json=False, untaken_after=1.0)
    err = capsys.readouterr().err
    assert code == 3  # cannot tell: it may still be taken later
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    assert (f"no worker has taken this job in 1 s: is a worker running against "
            f"redis://127.0.0.1:{port}/0 (REDIS_URL)?") in err  # fmt: skip
