"""What failover safety costs: a claim and a task id confirmed by a replica (Redis WAIT).

``.venv/bin/python bench/bench_wait.py [--jobs 200] [--runs 7]``

A private primary and a replica of it (``--replicaof``, on this host), and the simulator
(generation time 0). Each job's steps (submit, poll, download: it finishes the job) run
in this process, one job after another, with no Celery in between, as in bench_cpu.py:
once with the wait on (``RELAYDANCE_REDIS_MIN_REPLICAS=1``: the claim and the recorded
task id each go with a WAIT) and once with it off (``0``), against the same primary and
replica, the two alternating run after run. Reported per setting, as medians over the
runs: CPU milliseconds per job (this process: the fleet's own code), the median latency
of a submit step (the claim, the POST, the recorded task id), Redis round trips per job,
and the WAITs the server ran per job; then the ratios, wait on over wait off, of those
medians and (``_pairs``) the median of each run's ratio to the run beside it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_cpu import RoundTrips
from harness import machine, median, write_results

MODEL = "doubao-seedance-2-0-fast-260128"


def _wait_calls(client: Any) -> int:
    return int(client.info("commandstats").get("cmdstat_wait", {}).get("calls", 0))


def _replica_online(client: Any) -> bool:
    return client.info("replication").get("slave0", {}).get("state") == "online"


def one_run(engine: Any, jobs: int, trips: RoundTrips) -> dict[str, float]:
    """Drive ``jobs`` fresh jobs through their steps; CPU, submit latency, round trips."""
    from tests.pipeline_helpers import run_step
    from worker.render.validation import validate_request

    request = validate_request({"model": MODEL, "prompt": "a paper boat"})
    ids = [engine.store.create_render(request, alias="default") for _ in range(jobs)]
    waits0, trips0 = _wait_calls(engine.redis), trips.count
    latencies: list[float] = []
    cpu0 = time.process_time()
    for job_id in ids:
        started = time.perf_counter()
        outcome = run_step(engine, "submit", job_id, seq=0)
        latencies.append(time.perf_counter() - started)
        assert outcome.action == "next", outcome
        for step in ("poll", "download"):
            assert run_step(engine, step, job_id, seq=0).action == "next"
    cpu = time.process_time() - cpu0
    round_trips = trips.count - trips0
    return {
        "cpu_ms_per_job": 1000 * cpu / jobs,
        "submit_ms_p50": 1000 * statistics.median(latencies),
        "round_trips_per_job": round_trips / jobs,
        "waits_per_job": (_wait_calls(engine.redis) - waits0) / jobs,
    }


def _warm_engines(redis_url: str, sim_url: str, out: Path) -> dict[str, Any]:
    """An engine with the wait on and one with it off, each past one warm-up job."""
    from config.settings import load_settings
    from tests.pipeline_helpers import make_engine, run_step
    from worker.render.validation import validate_request

    engines = {}
    for name, replicas in (("wait on", 1), ("wait off", 0)):
        settings = load_settings(
            redis_url=redis_url, api_key="sk-bench-wait", base_url=sim_url,
            allow_local_urls=True, output_dir=out, poll_first_delay=0.0,
            requests_per_second=10000, max_concurrency=100000,
            redis_min_replicas=replicas,
        )  # fmt: skip
        engines[name] = make_engine(settings)
        warm = engines[name].store.create_render(
            validate_request({"model": MODEL, "prompt": "warm"}), alias="default"
        )
        for step in ("submit", "poll", "download"):
            run_step(engines[name], step, warm, seq=0)
    return engines


def _summary(rows: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """The medians of each setting's runs and the ratios of wait on to wait off."""
    summary: dict[str, Any] = {}
    for name, found in rows.items():
        summary[name] = {key: round(median([row[key] for row in found]), 3) for key in found[0]} | {
            "cpu_ms_per_job_runs": [round(row["cpu_ms_per_job"], 2) for row in found]
        }
    on, off = summary["wait on"], summary["wait off"]
    # Each run with the wait on against the run beside it with the wait off: the shared
    # machine's load drifts over minutes, and a pair sees the same load.
    pairs = list(zip(rows["wait on"], rows["wait off"], strict=True))
    summary["ratio"] = {
        "cpu_per_job": round(on["cpu_ms_per_job"] / off["cpu_ms_per_job"], 3),
        "submit_latency": round(on["submit_ms_p50"] / off["submit_ms_p50"], 3),
        "cpu_per_job_pairs": round(
            median([a["cpu_ms_per_job"] / b["cpu_ms_per_job"] for a, b in pairs]), 3
        ),
        "submit_latency_pairs": round(
            median([a["submit_ms_p50"] / b["submit_ms_p50"] for a, b in pairs]), 3
        ),
    }
    return summary


def run(jobs: int, runs: int) -> dict[str, Any]:
    import redis

    from simulator.testing import SimulatorProcess
    from worker.infra.redis_server import RedisServer

    out = Path(tempfile.mkdtemp(prefix="bench-wait-"))
    primary = RedisServer(extra=["--repl-diskless-sync-delay", "0"]).start()
    replica = RedisServer(extra=["--replicaof", "127.0.0.1", str(primary.port)]).start()
    client = redis.Redis.from_url(primary.url, decode_responses=True)
    try:
        deadline = time.monotonic() + 30
        while not _replica_online(client):
            assert time.monotonic() < deadline, "the replica never synced"
            time.sleep(0.05)
        with SimulatorProcess(gen_time_mean=0.0, gen_time_jitter=0.0) as sim:
            engines = _warm_engines(primary.url, sim.url, out)
            trips = RoundTrips()
            rows: dict[str, list[dict[str, float]]] = {name: [] for name in engines}
            for n in range(runs):
                order = list(engines) if n % 2 == 0 else list(reversed(engines))
                for name in order:
                    rows[name].append(one_run(engines[name], jobs, trips))
            for engine in engines.values():
                engine.close()
    finally:
        client.close()
        replica.stop()
        primary.stop()
    return {"jobs_per_run": jobs, "runs": runs, **_summary(rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    result = run(args.jobs, args.runs)
    print(json.dumps(result, indent=2))
    write_results("wait", {"machine": machine(), **result})


if __name__ == "__main__":
    main()
