"""How long the fleet takes to move again after a Redis restart, with no process supervisor.

``.venv/bin/python bench/bench_redis_restart.py [--outages 5,15,30] [--jobs 10]``

For each outage length: a fresh redis-server (append-only file, fsync always), the
simulator (3 s generations), one worker, beat and the webhook receiver, all with the
production timers (sweep every 20 s, beat's 5 s loop and 30 s lock). A first round of jobs
finishes; then Redis is SIGKILLed, kept down for the outage, and restarted from its file
on the same port; a second round is enqueued the moment it answers. Nothing restarts any
process. Measured from the moment Redis answers again:

- ``worker_s``: until the worker takes a job again (the first new job's submission);
- ``sweep_s``: until a worker has completed a sweep;
- ``beat_s``: until beat ticks again (extends its lock, or takes it anew when it lapsed,
  as in outages over its 30 s);
- ``all_done_s``: until every new job is done;
- ``alive``: whether the worker, beat and receiver all still run.

Figures go to ``bench/results/redis_restart.json``; docs/benchmarks.md quotes them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import (
    fleet_env,
    machine,
    print_table,
    run_child,
    start_web,
    start_worker,
    stop,
    use_env,
    write_results,
)

MODEL = "doubao-seedance-2-0-fast-260128"


def _watch(checks: dict[str, Any], *, timeout: float) -> dict[str, float | None]:
    """Seconds from now until each check first holds (None if not within ``timeout``), all
    watched in one loop; a Redis error counts as not yet."""
    import redis

    start = time.monotonic()
    found: dict[str, float | None] = dict.fromkeys(checks)
    while time.monotonic() - start < timeout and None in found.values():
        for name, check in checks.items():
            if found[name] is None:
                try:
                    if check():
                        found[name] = round(time.monotonic() - start, 1)
                except redis.RedisError:
                    pass
        time.sleep(0.05)
    return found


def _beat_ticked(client: Any, lock_key: str) -> Callable[[], bool]:
    """A check that beat ticks again, from the time to live of its lock as of now."""
    low = [client.pttl(lock_key)]  # -2 once the lock has lapsed

    def beat_ticked() -> bool:
        # Each tick extends the lock to its full timeout (a lapsed one is taken anew):
        # its time to live going up is beat at work again.
        now = client.pttl(lock_key)
        ticked = now > low[0] + 500
        low[0] = min(low[0], now)
        return ticked

    return beat_ticked


def run_one(*, outage: float, jobs: int) -> dict[str, Any]:
    import redis

    from simulator.testing import SimulatorProcess
    from worker.infra.redis_server import RedisServer, free_port

    work = Path(tempfile.mkdtemp(prefix="bench-restart-"))
    server = RedisServer(appendonly=True, appendfsync="always").start()
    sim = SimulatorProcess(gen_time_mean=3.0, gen_time_jitter=0.1, webhooks=True).start()
    web_port = free_port()
    env = fleet_env(server.url, sim.url, work / "renders",
                    RELAYDANCE_WEBHOOK_BASE_URL=f"http://127.0.0.1:{web_port}/hooks",
                    RELAYDANCE_WEBHOOK_SECRET="bench-restart-secret-dvn1ClWgJGzFpZNVUoDefNVsa1QHUGuG",
                    RELAYDANCE_WEBHOOK_SAFETY_POLL_SECONDS="10",
                    RELAYDANCE_METRICS_PORT="0")  # fmt: skip
    use_env(env)
    from redbeat.schedulers import ensure_conf

    from tasks import enqueue_render, get_job
    from worker.infra.celery_app import app
    from worker.job.sweeper import LAST_SWEEP_KEY

    web = start_web(env, web_port, work / "web.log")
    procs = start_worker(env, pool="threads", concurrency=8, log=work / "worker.log", beat=True)
    client = redis.Redis.from_url(server.url, decode_responses=True)
    lock_key = ensure_conf(app).lock_key
    try:
        first = [enqueue_render({"model": MODEL, "prompt": f"before {n}"}) for n in range(jobs)]
        warm = _watch({"done": lambda: all(get_job(j).state.value == "done" for j in first),
                       "beat": lambda: client.get(lock_key)}, timeout=120)  # fmt: skip
        assert None not in warm.values(), warm
        server.restart(crash=True, down_for=outage)  # returns once Redis answers
        back = time.time()
        second = [enqueue_render({"model": MODEL, "prompt": f"after {n}"}) for n in range(jobs)]
        beat_ticked = _beat_ticked(client, lock_key)
        found = _watch({
            "worker_s": lambda: any("submitting" in get_job(j).times for j in second),
            "sweep_s": lambda: float(client.get(LAST_SWEEP_KEY) or 0) > back,
            "beat_s": beat_ticked,
            "all_done_s": lambda: all(get_job(j).state.value == "done" for j in second),
        }, timeout=300)  # fmt: skip
        alive = all(p.poll() is None for p in [*procs, web])
        paid_twice = sim.stats()["paid_twice"]
    finally:
        stop([*procs, web])
        client.close()
        sim.stop()
        server.stop()
    return {"outage_s": outage, "jobs": jobs, **found, "alive": alive, "paid_twice": paid_twice}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--outages", default="5,15,30")
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(**json.loads(args.one))))
        return
    rows = []
    for outage in (float(o) for o in args.outages.split(",")):
        row = run_child(__file__, {"outage": outage, "jobs": args.jobs})
        print(json.dumps(row), flush=True)
        rows.append(row)
    print_table(rows, ["outage_s", "jobs", "worker_s", "sweep_s", "beat_s", "all_done_s",
                       "alive", "paid_twice"])  # fmt: skip
    write_results("redis_restart", {"machine": machine(), "rows": rows})


if __name__ == "__main__":
    main()
