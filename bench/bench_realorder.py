"""Performance at the real API's timer order: priors, GETs per job, a burst of submissions.

``.venv/bin/python bench/bench_realorder.py [--jobs 100] [--cap 10] [--burst 2000]``

Every timer is scaled by ``--scale`` (default 0.1; bench_chaos.py's environment): a 90 s
generation (+/- 15 %) takes 9 s, and polls, priors and safety polls keep their production
order. A fixed cost (a queue hop, a slot handed on) weighs 1/scale times more here than
in production, so these fractions are a floor of what the real API would see. Scenarios,
each in a fresh interpreter against a private redis-server and the simulator:

- ``polling-correct``: polling mode, the estimate already learned (five jobs' worth);
- ``polling-10x``: polling mode, a prior ten times too high and nothing learned;
- ``webhooks``: webhook mode: provider GETs per job (the simulator's GET count);
- ``burst``: webhook mode, ``--burst`` jobs enqueued at once as a batch with the key's
  cap high: from each clip being ready at the provider to its download starting (p50, p95).

Throughput is jobs generated per second, from the first submission to the last
generation, against the physical limit K x C / T (one key, cap C, generation T).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_chaos import GEN_REAL, MODEL, Workers, scaled_env
from harness import (
    machine,
    percentile,
    print_table,
    run_child,
    start_web,
    stop,
    use_env,
    write_results,
)


def _learned(engine: Any, kind: str, t: float) -> None:
    timing, T = engine.timing, t
    if kind == "correct":
        for sample in (0.95 * T, 1.05 * T, T, 0.9 * T, 1.1 * T):
            timing.record(MODEL, 5, sample, bracketed=True)
    elif kind == "10x":
        timing.record(MODEL, 5, 10 * T)
        engine.redis.hset("rd:timing:n", f"{MODEL}:5", 0)  # a prior, not an observation


def _enqueue(name: str, jobs: int) -> list[str]:
    """The scenario's jobs: one batch for the burst, single renders otherwise."""
    from tasks import enqueue_batch, enqueue_render

    if name == "burst":
        sub = enqueue_batch(
            [{"model": MODEL, "prompt": f"burst {i}", "seconds": 5} for i in range(jobs)]
        )
        return _batch_jobs(sub.batch_id)
    return [enqueue_render({"model": MODEL, "prompt": f"{name} {i}", "seconds": 5})
            for i in range(jobs)]  # fmt: skip


def _wait_final(store: Any, ids: list[str], *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(j is not None and j.is_final for j in store.get_many(ids)):
            break
        time.sleep(0.5)


def _rates(records: list[Any], T: float) -> tuple[float, float]:
    """Jobs generated per second over the whole run, and in its steady state."""
    generated = [j for j in records if "generated" in j.times and "submitted" in j.times]
    first = min(j.times["submitted"] for j in generated)
    last = max(j.times["generated"] for j in generated)
    rate = len(generated) / (last - first) if last > first else 0.0
    # Steady state: leave out the first generation (all slots start at once) and the
    # last one and a half (the final jobs finish one by one, slots idle behind them).
    window = (first + T, last - 1.5 * T)
    inside = [j for j in generated if window[0] <= j.times["generated"] <= window[1]]
    steady = len(inside) / (window[1] - window[0]) if window[1] > window[0] else 0.0
    return rate, steady


def _row(
    name: str, *, cap: int, T: float, ids: list[str], records: list[Any],
    stats: dict[str, Any], enqueued: float, ready: dict[str, float],
) -> dict[str, Any]:  # fmt: skip
    """The scenario's row: throughput against the cap, polls, and how soon clips were seen."""
    lag = [j.times["downloading"] - ready[j.id] for j in records
           if "downloading" in j.times and j.id in ready] if name == "burst" else []  # fmt: skip
    seen = [j.times["generated"] - ready[j.id] for j in records
            if "generated" in j.times and j.id in ready]  # fmt: skip
    rate, steady = _rates(records, T)
    return {
        "scenario": name,
        "jobs": len(ids),
        "cap": cap,
        "done": sum(j.state.value == "done" for j in records),
        "throughput_fraction": round(rate / (cap / T), 3),
        "steady_throughput_fraction": round(steady / (cap / T), 3),
        "polls_per_job": round(sum(j.poll_count for j in records) / len(records), 2),
        "provider_gets_per_job": round(stats["polls"] / len(records), 3),
        "rate_limited_429": stats["rate_limited"],
        "enqueue_s": round(enqueued, 3),
        "ready_to_download_p50_s": round(percentile(lag, 50), 3) if lag else None,
        "ready_to_download_p95_s": round(percentile(lag, 95), 3) if lag else None,
        # How long a ready clip waited for the fleet to see it (a poll or a webhook), in
        # generations: the slot's idle share.
        "ready_to_seen_mean_of_T": round(sum(seen) / len(seen) / T, 3) if seen else None,
        "handoff_mean_of_T": round(_handoff(records) / T, 3),
    }


def run_one(*, name: str, jobs: int, cap: int, scale: float) -> dict[str, Any]:
    from simulator.testing import SimulatorProcess
    from worker.infra.redis_server import RedisServer, free_port

    webhooks = name in ("webhooks", "burst")
    work = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    server = RedisServer().start()
    sim = SimulatorProcess(
        gen_time_mean=GEN_REAL, gen_time_jitter=0.15, time_scale=scale, seed=3,
        concurrency_cap=cap, webhooks=webhooks, webhook_retry_base=15.0,
    ).start()  # fmt: skip
    web_port = free_port() if webhooks else None
    env = scaled_env(server.url, sim.url, work / "renders", cap=cap, web_port=web_port,
                     scale=scale)  # fmt: skip
    env["RELAYDANCE_TASK_EVENTS"] = "true"  # as Flower needs them
    use_env(env)
    from worker.job.engine import get_engine

    engine = get_engine()
    T = GEN_REAL * scale
    _learned(engine, name.removeprefix("polling-"), T)
    web = start_web(env, web_port, work / "web.log") if web_port else None
    workers = Workers(env, work)
    time.sleep(6.0)  # the workers start (imports, connections) before any figure is taken
    try:
        started = time.time()
        ids = _enqueue(name, jobs)
        enqueued = time.time() - started
        store = engine.store
        _wait_final(store, ids, timeout=900)
        records = [j for j in store.get_many(ids) if j is not None]
        stats = sim.stats()
        ready = _ready_at(sim, records)
    finally:
        workers.stop()
        if web is not None:
            stop([web])
        sim.stop()
        server.stop()
    return _row(name, cap=cap, T=T, ids=ids, records=records, stats=stats, enqueued=enqueued,
                ready=ready)  # fmt: skip


def _batch_jobs(batch_id: str) -> list[str]:
    from worker.api.batches import batches as _batches

    return list(_batches().job_ids(batch_id).values())


def _ready_at(sim: Any, records: list[Any]) -> dict[str, float]:
    """When each job's clip was ready at the provider."""
    import httpx

    found = {}
    with httpx.Client(base_url=sim.root, timeout=5) as http:
        for job in records:
            if job.remote_task_id:
                found[job.id] = http.get(f"/_sim/tasks/{job.remote_task_id}").json()["ready_at"]
    return found


def _handoff(records: list[Any]) -> float:
    """Mean time from a slot freed (a job generated) to the next submission starting."""
    freed = sorted(j.times["generated"] for j in records if "generated" in j.times)
    starts = sorted(j.times["submitting"] for j in records if "submitting" in j.times)
    gaps = []
    for moment in freed:
        later = [s for s in starts if s >= moment]
        if later:
            gaps.append(later[0] - moment)
            starts.remove(later[0])
    return sum(gaps) / len(gaps) if gaps else 0.0


def scenario(**spec: Any) -> dict[str, Any]:
    """One run in a fresh interpreter; its row is printed as it comes."""
    row = run_child(__file__, spec)
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--cap", type=int, default=10)
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument(
        "--burst-cap",
        type=int,
        default=500,
        help="the key's cap in the burst (500: every core busy; 100: a backlog)",
    )
    parser.add_argument("--scale", type=float, default=0.1, help="timer scale (0.1: T = 9 s)")
    parser.add_argument("--only", help="comma-separated scenario names")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(**json.loads(args.one))))
        return
    plan = [("polling-correct", args.jobs, args.cap), ("polling-10x", args.jobs, args.cap),
            ("webhooks", args.jobs, args.cap), ("burst", args.burst, args.burst_cap)]  # fmt: skip
    wanted = set(args.only.split(",")) if args.only else None
    rows = [scenario(name=n, jobs=j, cap=c, scale=args.scale)
            for n, j, c in plan if not wanted or n in wanted]  # fmt: skip
    cols = ["scenario", "jobs", "cap", "done", "throughput_fraction",
            "steady_throughput_fraction", "polls_per_job",
            "provider_gets_per_job", "rate_limited_429",
            "ready_to_download_p50_s", "ready_to_download_p95_s", "ready_to_seen_mean_of_T",
            "handoff_mean_of_T"]  # fmt: skip
    print_table(rows, cols)
    write_results("realorder", {"machine": machine(), "scale": args.scale, "rows": rows})


if __name__ == "__main__":
    main()
