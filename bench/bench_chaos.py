"""Money safety at the real API's timer order, with and without faults, in both modes.

``.venv/bin/python bench/bench_chaos.py [--jobs 200] [--cap 10] [--kills 20]``

Every production timer is scaled by the same factor (1/30, the simulator's time scale), so
a 90 s generation takes 3 s and comes before the first poll, after the step grace and the
call deadline, and long before the webhook safety poll, as in production. For each mode
(polling, webhooks) two runs:

- **clean**: no fault; throughput against the physical limit K x C / T (one key, cap C,
  generation T), measured from the first submission to the last generation;
- **chaos**: one job in five is a still (a synchronous image request, no task id); the
  provider drops the reply of one accepted submission in nine (the task exists and is
  billed) and of one image request in three (the still is billed), the two workers are SIGKILLed in turn ``--kills`` times, and Redis
  is SIGKILLed and restarted from its append-only file once. Nothing restarts a process
  that the Redis restart might stop (no supervisor): the workers, beat and the receiver
  must ride it out; ``survived`` says whether they did.

Reported per run: jobs done, jobs left unknown, jobs paid twice (target 0; stills apart,
by their billed image requests), stills done and whether each stored still is the PNG the
simulator served, 429s (target 0), throughput of the clips as a fraction of K x C / T (target 0.9 clean), polls per job. Figures go
to ``bench/results/chaos.json``; docs/benchmarks.md quotes them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
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

SCALE = 1 / 30
GEN_REAL = 90.0  # seconds: the simulator's mean generation before scaling
MODEL = "doubao-seedance-2-0-fast-260128"
IMAGE_EVERY = 5  # under chaos, one job in five is a still
IMAGE_DROP_EVERY = 3  # under chaos, the reply of one image request in three is dropped


def scaled_env(
    redis_url: str, sim_url: str, out: Path, *, cap: int, web_port: int | None,
    scale: float = SCALE,
) -> dict[str, str]:  # fmt: skip
    """The fleet's settings with every production timer multiplied by ``scale``."""

    def t(seconds: float, floor: float = 0.05) -> str:
        return repr(max(seconds * scale, floor))

    extra = {
        "RELAYDANCE_MAX_CONCURRENCY": str(cap),
        "RELAYDANCE_REQUESTS_PER_SECOND": "200",
        "RELAYDANCE_TIME_SCALE": repr(scale),
        "RELAYDANCE_SWEEP_INTERVAL_SECONDS": t(20),
        "RELAYDANCE_SWEEP_GRACE_SECONDS": t(20),
        "RELAYDANCE_STEP_GRACE_SECONDS": t(90),
        "RELAYDANCE_HTTP_CALL_DEADLINE": t(60, 2.0),
        "RELAYDANCE_HTTP_CONNECT_TIMEOUT": "1",
        "RELAYDANCE_HTTP_READ_TIMEOUT": t(60, 2.0),
        "RELAYDANCE_SUBMIT_UNKNOWN_HOLD_SECONDS": t(300),
        "RELAYDANCE_POLL_INTERVAL_MIN": t(2),
        "RELAYDANCE_POLL_INTERVAL_MAX": t(30),
        "RELAYDANCE_POLL_DEADLINE_SECONDS": t(3600),
        "RELAYDANCE_TASK_EVENTS": "false",
    }
    if web_port is not None:
        extra["RELAYDANCE_WEBHOOK_BASE_URL"] = f"http://127.0.0.1:{web_port}/hooks"
        extra["RELAYDANCE_WEBHOOK_SECRET"] = "bench-webhook-secret-0cjo7tvD5dI9GXuglS42MwgixIbU9bWV"
        extra["RELAYDANCE_WEBHOOK_SAFETY_POLL_SECONDS"] = t(600)
    return fleet_env(redis_url, sim_url, out, **extra)


class Workers:
    """Two worker processes and beat; workers can be SIGKILLed and started again."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.workers = [self._worker(0), self._worker(1)]
        self.beat = self._beat()

    def _worker(self, n: int) -> subprocess.Popen[bytes]:
        log = self.logs / f"w{n}.log"
        return start_worker(self.env, pool="threads", concurrency=8, log=log)[0]

    def _beat(self) -> subprocess.Popen[bytes]:
        args = [sys.executable, "-m", "celery", "-A", "worker", "beat", "--loglevel", "WARNING",
                "--schedule", str(self.logs / "beat-schedule")]  # fmt: skip
        return subprocess.Popen(args, env=self.env, stdout=(self.logs / "beat.log").open("ab"),
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip

    def kill(self, n: int) -> None:
        os.killpg(self.workers[n].pid, signal.SIGKILL)
        self.workers[n].wait(timeout=10)
        self.workers[n] = self._worker(n)

    def alive(self) -> bool:
        """Whether the workers and beat all still run (nothing restarts them)."""
        return all(proc.poll() is None for proc in [*self.workers, self.beat])

    def stop(self) -> None:
        stop([*self.workers, self.beat])


def _unleash(
    server: Any, workers: Workers, *, kills: int, halt: threading.Event, killed: list[int]
) -> None:
    """Every 2.5 s SIGKILL a worker, ``kills`` times; a third of the way in, crash Redis."""
    for n in range(kills):
        if halt.wait(2.5):
            return
        if n == kills // 3:
            server.restart(crash=True)  # SIGKILL; back from the append-only file
        workers.kill(n % 2)
        killed[0] += 1


def _wait_settled(store: Any, ids: list[str], *, timeout: float) -> None:
    """Wait (bounded) until every job is final or in doubt; reads fail while Redis is down."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = [store.get(i) for i in ids]
        except Exception:
            time.sleep(0.5)
            continue
        if all(j is not None and (j.is_final or j.state.value == "submit_unknown")
               for j in found):  # fmt: skip
            break
        time.sleep(0.5)


def _generation_rate(records: list[Any]) -> float:
    """Jobs generated per second, from the first submit to the last generation."""
    generated = [j for j in records if j and "generated" in j.times and "submitted" in j.times]
    if not generated:
        return 0.0
    first = min(j.times["submitted"] for j in generated)
    last = max(j.times["generated"] for j in generated)
    return len(generated) / max(last - first, 1e-9)


def _request(i: int, *, chaos: bool) -> dict[str, Any]:
    """The ``i``-th job's request: under chaos a still for one job in IMAGE_EVERY."""
    if chaos and i % IMAGE_EVERY == IMAGE_EVERY - 2:
        return {"model": "grok-imagine-image", "prompt": f"bench still {i}", "n": 1,
                "size": "1024x1024"}  # fmt: skip
    return {"model": MODEL, "prompt": f"bench {i}", "seconds": 5}


def _stills(
    records: list[Any], stats: dict[str, Any], urls: dict[str, list[str] | None]
) -> dict[str, Any]:
    """The stills: how many, done, paid twice, and whether each stored one is as served."""
    from simulator import image_sha256

    stills = [j for j in records if j and j.kind.value == "image"]
    posts = stats["image_requests_by_idempotency_key"]
    done = [j for j in stills if j.state.value == "done"]
    served = [image_sha256(u.split("/images/")[1].split(".png")[0], 1024, 1024)
              for j in done for u in urls.get(j.id) or []]  # fmt: skip
    stored = [hashlib.sha256(Path(out["path"]).read_bytes()).hexdigest()
              for j in done for out in j.outputs]  # fmt: skip
    return {
        "stills": len(stills),
        "stills_done": len(done),
        "stills_as_served": served == stored,
        "image_paid_twice": sum(1 for j in stills if posts.get(j.id, 0) > 1),
    }


def _row(
    spec: dict[str, Any], *, kills: int, killed: int, records: list[Any], stats: dict[str, Any],
    seconds: float, survived: bool, still_urls: dict[str, list[str] | None],
) -> dict[str, Any]:  # fmt: skip
    """The run's row: what became of the jobs, what was paid, how fast."""
    states: dict[str, int] = {}
    for job in records:
        state = job.state.value if job else "missing"
        states[state] = states.get(state, 0) + 1
    rate = _generation_rate(records)
    limit = spec["cap"] / (GEN_REAL * SCALE)
    polls = sum(j.poll_count for j in records if j)
    return {
        **spec,
        "kills": killed,
        "redis_restarts": 1 if spec["chaos"] and killed > kills // 3 else 0,
        "dropped_replies": stats["dropped_replies"],
        "states": states,
        "done": states.get("done", 0),
        "unknown": states.get("submit_unknown", 0),
        "failed": states.get("failed", 0),
        "paid_twice": stats["paid_twice"],
        **_stills(records, stats, still_urls),
        "rate_limited_429": stats["rate_limited"],
        "adopted": sum(1 for j in records if j and j.adopted_from),
        "throughput_fraction": round(rate / limit, 3),
        "jobs_per_s": round(rate, 3),
        "physical_limit_jobs_per_s": round(limit, 3),
        "polls_per_job": round(polls / max(len(records), 1), 2),
        "wall_s": round(seconds, 1),
        "survived": survived,
    }


def run_one(*, mode: str, chaos: bool, jobs: int, cap: int, kills: int) -> dict[str, Any]:
    from simulator.testing import SimulatorProcess
    from worker.infra.redis_server import RedisServer, free_port

    webhooks = mode == "webhooks"
    work = Path(tempfile.mkdtemp(prefix="bench-chaos-"))
    server = RedisServer(appendonly=True, appendfsync="always").start()
    sim = SimulatorProcess(
        gen_time_mean=GEN_REAL, gen_time_jitter=0.2, time_scale=SCALE, seed=5,
        concurrency_cap=cap, retry_after=30.0, drop_reply_every=9 if chaos else 0,
        image_drop_reply_every=IMAGE_DROP_EVERY if chaos else 0,
        webhooks=webhooks, webhook_retry_base=15.0, webhook_max_attempts=6,
    ).start()  # fmt: skip
    web_port = free_port() if webhooks else None
    env = scaled_env(server.url, sim.url, work / "renders", cap=cap, web_port=web_port)
    use_env(env)
    from tasks import enqueue_render
    from worker.job.engine import get_engine

    web = start_web(env, web_port, work / "web.log") if web_port else None
    workers = Workers(env, work)
    done_killing = threading.Event()
    killed = [0]
    try:
        started = time.time()
        ids = [enqueue_render(_request(i, chaos=chaos)) for i in range(jobs)]
        chaos_thread = threading.Thread(
            target=_unleash, args=(server, workers),
            kwargs={"kills": kills, "halt": done_killing, "killed": killed}, daemon=True,
        )  # fmt: skip
        if chaos:
            chaos_thread.start()
        store = get_engine().store
        _wait_settled(store, ids, timeout=900)
        done_killing.set()
        chaos_thread.join(timeout=30) if chaos else None
        finished, records = time.time(), [store.get(i) for i in ids]
        urls = dict(zip(ids, store.image_urls(ids), strict=True))  # a still's: kept apart
        stats = sim.stats()
        survived = workers.alive() and (web is None or web.poll() is None)
    finally:
        done_killing.set()
        workers.stop()
        if web is not None:
            stop([web])
        sim.stop()
        server.stop()
    spec = {"mode": mode, "chaos": chaos, "jobs": jobs, "cap": cap}
    return _row(spec, kills=kills, killed=killed[0], records=records, stats=stats,
                seconds=finished - started, survived=survived, still_urls=urls)  # fmt: skip


def scenario(**spec: Any) -> dict[str, Any]:
    """One run in a fresh interpreter; its row is printed as it comes."""
    row = run_child(__file__, spec)
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--cap", type=int, default=10)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--modes", default="polling,webhooks")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(**json.loads(args.one))))
        return
    rows = []
    for mode in args.modes.split(","):
        for chaos in (False, True):
            rows.append(scenario(mode=mode, chaos=chaos, jobs=args.jobs, cap=args.cap,
                                 kills=args.kills))  # fmt: skip
    cols = ["mode", "chaos", "jobs", "done", "unknown", "failed", "paid_twice",
            "stills", "stills_done", "stills_as_served", "image_paid_twice",
            "rate_limited_429", "adopted", "kills", "dropped_replies", "throughput_fraction",
            "polls_per_job", "wall_s", "survived"]  # fmt: skip
    print_table(rows, cols)
    write_results("chaos", {"machine": machine(), "scale": SCALE, "generation_real_s": GEN_REAL,
                            "rows": rows})  # fmt: skip


if __name__ == "__main__":
    main()
