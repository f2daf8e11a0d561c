"""The render pipeline against the simulator, with the naive design side by side.

    .venv/bin/python bench/bench_pipeline.py [--jobs 500] [--naive-jobs 40] [--inflight 2000]

Runs, each on a fresh Redis and simulator (generation time 2 s, no cap):
1. throughput with N jobs: our chain on each worker pool at concurrency 2, and the naive
   design (one task submits, then sleeps and polls, as seed 004's example) at concurrency 2;
2. one worker holding 2,000 jobs in flight: all finish; worker RSS and Redis memory per job;
3. worker CPU per job, polls per job, and the delay from the remote task finishing to the
   mp4 on disk (p50, p95).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import fleet_env as make_env
from harness import (
    machine,
    percentile,
    print_table,
    start_worker,
    stop,
    tree_cpu_and_rss,
    use_env,
    write_results,
)

from simulator.testing import SimulatorProcess
from worker.infra.redis_server import RedisServer

MODEL = "doubao-seedance-2-0-fast-260128"
GEN = 2.0


def _wait_all(store: Any, ids: list[str], timeout: float) -> tuple[float, list[Any]]:
    deadline = time.monotonic() + timeout
    pending = set(ids)
    while pending and time.monotonic() < deadline:
        for job_id in list(pending):
            job = store.get(job_id)
            if job is not None and job.is_final:
                pending.discard(job_id)
        if pending:
            time.sleep(0.2)
    return time.time(), [store.get(i) for i in ids]


def _ours_settings(*, jobs: int, events: bool, poll_first: str | None) -> dict[str, str]:
    extra = {
        "RELAYDANCE_POLL_INTERVAL_MIN": "0.5",
        "RELAYDANCE_POLL_INTERVAL_MAX": "2",
        "RELAYDANCE_MAX_CONCURRENCY": str(max(jobs, 10)),
        "RELAYDANCE_REQUESTS_PER_SECOND": "10000",
        "RELAYDANCE_TASK_EVENTS": "true" if events else "false",
    }
    if poll_first is not None:
        extra["RELAYDANCE_POLL_FIRST_DELAY"] = poll_first
    return extra


def _idle_cpu_rate(pid: int) -> float:
    """CPU seconds per second the worker spends at rest, measured over 5 s."""
    idle0, _ = tree_cpu_and_rss(pid)
    time.sleep(5.0)
    idle1, _ = tree_cpu_and_rss(pid)
    return (idle1 - idle0) / 5.0


def _watch_peaks(store: Any, client: Any, pid: int) -> tuple[int, int]:
    """Until no job is active (bounded): the worker's peak RSS and Redis's peak memory."""
    peak_rss, peak_mem = 0, 0
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        _, rss = tree_cpu_and_rss(pid)
        peak_rss = max(peak_rss, rss)
        peak_mem = max(peak_mem, int(client.info("memory")["used_memory"]))
        if store.active_count() == 0:
            break
        time.sleep(0.5)
    return peak_rss, peak_mem


def _finish_to_disk(sim_root: str, records: list[Any]) -> list[float]:
    """Seconds from each remote task finishing to its job being done."""
    delays: list[float] = []
    for job in records:
        if job is None or job.remote_task_id is None or "done" not in job.times:
            continue
        info = httpx.get(f"{sim_root}/_sim/tasks/{job.remote_task_id}").json()
        delays.append(job.times["done"] - float(info["ready_at"]))
    return delays


def _design(pool: str, jobs: int, *, inflight: bool, events: bool) -> str:
    design = f"chain ({pool}), {jobs} in flight" if inflight else f"chain ({pool})"
    return design if events else design + ", task events off"


def _ours_row(
    *, design: str, pool: str, concurrency: int, jobs: int, records: list[Any],
    stats: dict[str, Any], started: float, finished: float, cpu: float, idle_rate: float,
    peak_rss: int, redis_bytes: int, delays: list[float],
) -> dict[str, Any]:  # fmt: skip
    """One row of our design: throughput, CPU, polls, memory and finish-to-disk delays."""
    done = sum(1 for j in records if j is not None and j.state.value == "done")
    end = max((j.times.get("done", 0.0) for j in records if j is not None), default=finished)
    elapsed = end - started
    # Idle sweeps (one per second) are not per-job work; count them out as measured at rest.
    return {
        "design": design,
        "pool": pool,
        "concurrency": concurrency,
        "jobs": jobs,
        "done": done,
        "seconds": round(elapsed, 2),
        "jobs_per_s": round(done / elapsed, 2) if elapsed > 0 else 0.0,
        "cpu_ms_per_job": round(cpu * 1000 / max(done, 1), 2),
        "cpu_ms_per_job_net_of_idle": round((cpu - idle_rate * elapsed) * 1000 / max(done, 1), 2),
        "polls_per_job": round(
            sum(j.poll_count for j in records if j is not None) / max(done, 1), 2
        ),
        "submissions": stats["submissions"],
        "peak_in_flight": max(stats["peak_in_flight_by_key"].values(), default=0),
        "worker_peak_rss_mb": round(peak_rss / 2**20, 1),
        "redis_bytes_per_job": round(redis_bytes / max(jobs, 1)),
        "finish_to_disk_p50_s": round(percentile(delays, 50), 3),
        "finish_to_disk_p95_s": round(percentile(delays, 95), 3),
    }


def run_ours(*, jobs: int, pool: str, concurrency: int, gen: float, inflight: bool = False,
             poll_first: str | None = None, events: bool = True) -> dict[str, Any]:  # fmt: skip
    """Enqueue ``jobs`` renders at once and measure until all are final."""
    with (
        RedisServer() as rs,
        SimulatorProcess(gen_time_mean=gen, gen_time_jitter=0.2, seed=1) as sim,
    ):
        out = Path(tempfile.mkdtemp(prefix="bench-out-"))
        extra = _ours_settings(jobs=jobs, events=events, poll_first=poll_first)
        env = make_env(rs.url, sim.url, out, **extra)
        use_env(env)
        from tasks import enqueue_render
        from worker.job.engine import get_engine

        store = get_engine().store
        client = redis.Redis.from_url(rs.url)
        base_mem = int(client.info("memory")["used_memory"])
        log = out / "worker.log"
        procs = start_worker(env, pool=pool, concurrency=concurrency, log=log, beat=True)
        time.sleep(3.0)  # let the worker connect before the clock starts
        # The fleet learns each model's generation time from finished jobs; start from the
        # state it reaches after one finished job instead of the catalogue's cold prior.
        get_engine().timing.record(MODEL, 5, gen)
        idle_rate = _idle_cpu_rate(procs[0].pid)
        sim.reset()
        cpu0, _ = tree_cpu_and_rss(procs[0].pid)
        started = time.time()
        ids = [
            enqueue_render({"model": MODEL, "prompt": f"clip {i}", "seconds": 5})
            for i in range(jobs)
        ]
        peak_rss, peak_mem = _watch_peaks(store, client, procs[0].pid)
        finished, records = _wait_all(store, ids, timeout=30)
        cpu1, _ = tree_cpu_and_rss(procs[0].pid)
        stats = sim.stats()
        delays = _finish_to_disk(sim.root, records)
        stop(procs)
        return _ours_row(
            design=_design(pool, jobs, inflight=inflight, events=events), pool=pool,
            concurrency=concurrency, jobs=jobs, records=records, stats=stats, started=started,
            finished=finished, cpu=cpu1 - cpu0, idle_rate=idle_rate, peak_rss=peak_rss,
            redis_bytes=peak_mem - base_mem, delays=delays,
        )  # fmt: skip


def run_naive(*, jobs: int, concurrency: int, gen: float, interval: float) -> dict[str, Any]:
    """The naive design: one task per job that sleeps between polls."""
    with (
        RedisServer() as rs,
        SimulatorProcess(gen_time_mean=gen, gen_time_jitter=0.2, seed=1) as sim,
    ):
        out = Path(tempfile.mkdtemp(prefix="bench-naive-"))
        env = make_env(rs.url, sim.url, out)
        use_env(env)
        from worker.infra.celery_app import app

        procs = start_worker(env, pool="prefork", concurrency=concurrency, log=out / "worker.log",
                             include="naive")  # fmt: skip
        time.sleep(3.0)
        cpu0, _ = tree_cpu_and_rss(procs[0].pid)
        started = time.time()
        body = {"model": MODEL, "prompt": "clip", "seconds": "5"}
        results = [
            app.send_task("bench.naive_render",
                          args=[sim.url, "sk-bench-key", body, str(out / f"{i}.mp4"), interval])
            for i in range(jobs)
        ]  # fmt: skip
        client = redis.Redis.from_url(rs.url)
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline and len(list(out.glob("*.mp4"))) < jobs:
            time.sleep(0.2)
        elapsed = time.time() - started
        cpu1, _ = tree_cpu_and_rss(procs[0].pid)
        stats = sim.stats()
        stop(procs)
        done = len(list(out.glob("*.mp4")))
        del results, client
        return {
            "design": f"naive sleep loop (prefork, sleep {interval:g} s)",
            "pool": "prefork",
            "concurrency": concurrency,
            "jobs": jobs,
            "done": done,
            "seconds": round(elapsed, 2),
            "jobs_per_s": round(done / elapsed, 3) if elapsed > 0 else 0.0,
            "cpu_ms_per_job": round((cpu1 - cpu0) * 1000 / max(done, 1), 2),
            "polls_per_job": round(stats["polls"] / max(done, 1), 2),
            "submissions": stats["submissions"],
        }


def scenario(kind: str, **kwargs: Any) -> dict[str, Any]:
    """Run one scenario in a fresh interpreter (a Celery app is bound to one broker)."""
    import json
    import subprocess

    out = subprocess.run(
        [sys.executable, __file__, "--one", json.dumps({"kind": kind, **kwargs})],
        check=False, capture_output=True, text=True,
    )  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"scenario {kind} {kwargs} failed:\n{out.stderr[-3000:]}")
    row: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    print(row, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--naive-jobs", type=int, default=40)
    parser.add_argument("--naive-interval", type=float, default=1.0)
    parser.add_argument("--inflight", type=int, default=2000)
    parser.add_argument("--pools", default="threads,prefork")  # gevent stalls: docs/benchmarks.md
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        import json

        spec = json.loads(args.one)
        kind = spec.pop("kind")
        print(json.dumps(run_ours(**spec) if kind == "ours" else run_naive(**spec)))
        return
    rows: list[dict[str, Any]] = []
    for pool in args.pools.split(","):
        rows.append(scenario("ours", jobs=args.jobs, pool=pool, concurrency=2, gen=GEN))
    rows.append(scenario("ours", jobs=args.jobs, pool=args.pools.split(",")[0], concurrency=2,
                         gen=GEN, events=False))  # fmt: skip
    rows.append(scenario("naive", jobs=args.naive_jobs, concurrency=2, gen=GEN,
                         interval=args.naive_interval))  # fmt: skip
    best = max(r["jobs_per_s"] for r in rows[:-1])
    ratio = best / rows[-1]["jobs_per_s"] if rows[-1]["jobs_per_s"] else float("inf")
    if args.inflight:
        # Long generations so that every job is in flight at once.
        rows.append(scenario("ours", jobs=args.inflight, pool=args.pools.split(",")[0],
                             concurrency=2, gen=30.0, inflight=True, poll_first="30"))  # fmt: skip
    cols = ["design", "concurrency", "jobs", "done", "seconds", "jobs_per_s", "cpu_ms_per_job",
            "cpu_ms_per_job_net_of_idle",
            "polls_per_job", "submissions", "peak_in_flight", "worker_peak_rss_mb",
            "redis_bytes_per_job", "finish_to_disk_p50_s", "finish_to_disk_p95_s"]  # fmt: skip
    print_table(rows, cols)
    print(f"\nthroughput ratio, best chain pool vs naive: {ratio:.1f}x")
    write_results("pipeline", {"machine": machine(), "generation_s": GEN, "rows": rows,
                               "ratio_vs_naive": round(ratio, 1)})  # fmt: skip


if __name__ == "__main__":
    main()
