"""Shared pieces of the benchmarks: a private Redis, the simulator and worker processes."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def fleet_env(redis_url: str, sim_url: str, out: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "RELAYDANCE_API_KEY": "sk-bench-key",
        "RELAYDANCE_BASE_URL": sim_url,
        "RELAYDANCE_ALLOW_LOCAL_URLS": "true",
        "RELAYDANCE_OUTPUT_DIR": str(out),
        "PYTHONPATH": f"{ROOT / 'bench'}:{ROOT}",
    }
    env.update(extra)
    return env


def start_worker(env: dict[str, str], *, pool: str, concurrency: int, log: Path,
                 include: str | None = None, beat: bool = False) -> list[subprocess.Popen[bytes]]:  # fmt: skip
    args = [sys.executable, "-m", "celery", "-A", "worker", "worker", "--pool", pool,
            "--concurrency", str(concurrency), "--loglevel", "WARNING", "--without-gossip",
            "--without-mingle", "--hostname", f"bench-{time.monotonic_ns()}@%h"]  # fmt: skip
    if include:
        args += ["--include", include]
    procs = [subprocess.Popen(args, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                              start_new_session=True)]  # fmt: skip
    if beat:
        schedule = log.with_suffix(".beat")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker", "beat", "--loglevel", "WARNING",
             "--schedule", str(schedule)],
            env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True))  # fmt: skip
    return procs


def use_env(env: dict[str, str]) -> None:
    """Point this process's settings and producer API at ``env`` (one scenario per process:
    a Celery app binds to the broker it first saw)."""
    os.environ.update(env)
    from config.settings import get_settings
    from worker.infra.celery_app import app
    from worker.job.engine import reset_engine

    get_settings.cache_clear()
    reset_engine()
    assert app.conf.broker_url == env["REDIS_URL"]


def start_web(
    env: dict[str, str], port: int, log: Path, *, workers: int = 1
) -> subprocess.Popen[bytes]:
    """The webhook receiver (``worker.web.app.serve``) as a child process, once it answers."""
    import httpx

    code = (
        "from worker.web.app import serve; "
        f"serve('127.0.0.1', {port}, workers={workers}, log_level='warning')"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=log.open("ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    stop([proc])
    raise RuntimeError(f"webhook receiver did not start: {log.read_text()[-2000:]}")


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def tree_cpu_and_rss(pid: int) -> tuple[float, int]:
    """CPU seconds (user+system) and RSS bytes of a process and its children."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0, 0
    cpu, rss = 0.0, 0
    for proc in procs:
        try:
            times = proc.cpu_times()
            cpu += times.user + times.system
            rss += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return cpu, rss


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def write_results(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def machine() -> str:
    return f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, {sys.platform}"


def run_child(script: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``script --one SPEC`` in a fresh interpreter (a Celery app is bound to one
    broker) and return the JSON row it prints last; exit with its stderr if it failed."""
    out = subprocess.run([sys.executable, script, "--one", json.dumps(spec)],
                         check=False, capture_output=True, text=True)  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"scenario {spec} failed:\n{out.stderr[-3000:]}")
    row: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return row


def print_table(rows: list[dict[str, Any]], cols: list[str]) -> None:
    """The rows as a Markdown table of ``cols`` (a missing cell is left empty)."""
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for row in rows:
        print("| " + " | ".join(str(row.get(c, "")) for c in cols) + " |")
