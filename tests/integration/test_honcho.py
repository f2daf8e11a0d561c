"""`honcho start` runs the Procfile's fleet with a REDIS_URL: it renders, then stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis

from simulator.testing import SimulatorProcess
from tests.fleet import wait_until
from worker.infra.redis_server import RedisServer, free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _free_base(count: int) -> int:
    """A base port such that base + 100 x i is free for every process i."""
    import socket

    for _ in range(50):
        base = free_port() % 20000 + 20000
        try:
            for i in range(count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", base + 100 * i))
        except OSError:
            continue
        return base
    raise RuntimeError("no free port range for honcho")


def _honcho_env(
    redis_url: str, sim_url: str, output: Path, *, flower_port: int, metrics_port: int
) -> dict[str, str]:
    """The environment honcho starts the Procfile in: this Python first on the PATH."""
    bin_dir = str(Path(sys.executable).parent)
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("RELAYDANCE_")},
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        "REDIS_URL": redis_url,
        "RELAYDANCE_API_KEY": "sk-test-honcho",
        "RELAYDANCE_BASE_URL": sim_url,
        "RELAYDANCE_ALLOW_LOCAL_URLS": "true",
        "RELAYDANCE_OUTPUT_DIR": str(output),
        "RELAYDANCE_POLL_FIRST_DELAY": "0.3",
        "RELAYDANCE_POLL_INTERVAL_MIN": "0.2",
        "RELAYDANCE_WORKER_CONCURRENCY": "4",
        "FLOWER_PORT": str(flower_port),
        "RELAYDANCE_METRICS_PORT": str(metrics_port),
        "FLOWER_BASIC_AUTH": "ops:test-pass",
    }


def _up(web_port: int, flower_port: int) -> bool:
    """Whether the receiver and Flower both answer."""
    try:
        web = httpx.get(f"http://127.0.0.1:{web_port}/healthz", timeout=2)
        flower = httpx.get(f"http://127.0.0.1:{flower_port}/workers", timeout=5,
                           auth=("ops", "test-pass"))  # fmt: skip
    except httpx.HTTPError:
        return False
    return web.status_code == 200 and flower.status_code == 200


def test_honcho_runs_the_procfile_fleet_renders_a_clip_and_stops_cleanly(
    redis_server: RedisServer, sim: SimulatorProcess, tmp_path: Path
) -> None:
    redis.Redis.from_url(redis_server.url).flushall()
    # honcho gives each process PORT = base + 100 x its place in the Procfile, as Foreman does.
    names = [line.split(":", 1)[0] for line in (ROOT / "Procfile").read_text().splitlines()
             if line.strip() and not line.startswith("#")]  # fmt: skip
    base = _free_base(len(names))
    web_port, flower_port = base + 100 * names.index("web"), free_port()
    metrics_port = free_port()  # metrics have their own loopback listener
    env = _honcho_env(redis_server.url, sim.url, tmp_path / "renders", flower_port=flower_port,
                      metrics_port=metrics_port)  # fmt: skip
    log = (tmp_path / "honcho.log").open("wb")
    honcho = subprocess.Popen(
        [sys.executable, "-m", "honcho", "-f", str(ROOT / "Procfile"), "-d", str(ROOT), "start",
         "-p", str(base)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        up = wait_until(lambda: _up(web_port, flower_port), timeout=60, interval=0.5)
        assert up, (tmp_path / "honcho.log").read_text()
        render = subprocess.run(
            [sys.executable, "-m", "worker.cli.main", "render", "--model",
             "doubao-seedance-2-0-fast-260128", "--prompt", "a harbour at dawn", "--wait",
             "--timeout", "60"],
            env=env, capture_output=True, text=True, timeout=90, cwd=tmp_path,
        )  # fmt: skip
        assert render.returncode == 0, render.stderr + (tmp_path / "honcho.log").read_text()
        assert Path(render.stdout.strip()).is_file()
        public = httpx.get(f"http://127.0.0.1:{web_port}/metrics", timeout=5)
        assert public.status_code == 404  # never on the public receiver
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        assert 'relaydance_jobs{state="done"} 1' in metrics
    finally:
        os.killpg(honcho.pid, signal.SIGINT)
        try:
            code = honcho.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(honcho.pid, signal.SIGKILL)
            raise
    text = (tmp_path / "honcho.log").read_text()
    assert code in (0, 130, -signal.SIGINT), text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    time.sleep(0.2)
    assert honcho.poll() is not None
