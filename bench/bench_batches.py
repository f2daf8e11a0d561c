"""Batches: validating and enqueueing a large file; Redis memory per job; throughput of a
batch against a provider concurrency cap; the time to write its report.

    .venv/bin/python bench/bench_batches.py [--lines 2000] [--run-lines 1000] [--gen-time 2]

1. Enqueue: a ``--lines`` JSON Lines file (distinct prompts) is read, validated, planned
   and enqueued (records, budget claims, one ``relaydance.resume`` message per job) with
   no worker running. Targets: under 3 s for 2,000 lines. Redis round trips per line (the
   requests this process sends while enqueueing; a pipeline is one). Memory per queued job:
   ``MEMORY USAGE`` of the job hashes, and the growth of ``used_memory`` (job, batch keys,
   broker messages) divided by the line count.
2. Run: a ``--run-lines`` batch through the simulator with a concurrency cap of 10 per key
   and ``--gen-time`` s per clip, one worker (threads) and beat (the sweeper). The ideal
   throughput is cap / gen time (5 jobs/s); the figure is the achieved fraction. Then the
   CSV report is written (target under 1 s), and memory per finished job is measured
   (target under 2 KB for the job hash).

Writes bench/results/batches.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import fleet_env, machine, start_worker, stop, write_results

from simulator.testing import SimulatorProcess
from worker.infra.redis_server import RedisServer

MODEL = "doubao-seedance-2-0-fast-260128"
CAP = 10


def write_file(path: Path, lines: int, tag: str) -> None:
    with path.open("w") as out:
        for i in range(lines):
            prompt = f"{tag} shot {i}: a paper boat drifts down a rain-soaked street, cinematic"
            out.write(json.dumps({"model": MODEL, "prompt": prompt, "seconds": 5}) + "\n")


class RoundTrips:
    """Counts the requests this process sends to Redis (a pipeline is one) until stopped."""

    def __init__(self) -> None:
        import redis.connection

        self.count = 0
        self._cls = redis.connection.AbstractConnection
        self._original = original = self._cls.send_packed_command

        def counting(conn: Any, command: Any, check_health: bool = True) -> None:
            self.count += 1
            original(conn, command, check_health)

        self._cls.send_packed_command = counting  # type: ignore[method-assign]

    def stop(self) -> int:
        self._cls.send_packed_command = self._original  # type: ignore[method-assign]
        return self.count


def use(env: dict[str, str]) -> None:
    """Point this process's settings, engine and Celery app at ``env``."""
    import os

    os.environ.update(env)
    from config.settings import get_settings
    from worker.job.engine import reset_engine

    get_settings.cache_clear()
    reset_engine()


def job_memory(client: redis.Redis, sample: int = 200) -> float:
    keys = []
    for key in client.scan_iter("rd:job:*", count=1000):
        keys.append(key)
        if len(keys) >= sample:
            break
    sizes = [int(client.memory_usage(k, samples=0) or 0) for k in keys]
    return sum(sizes) / max(len(sizes), 1)


def compact_job_memory(client: redis.Redis, sample: int = 200) -> float:
    """The same finished job hashes, re-written with ``hash-max-listpack-value 1024``."""
    previous = client.config_get("hash-max-listpack-value")["hash-max-listpack-value"]
    client.config_set("hash-max-listpack-value", 1024)
    try:
        sizes = []
        for key in list(client.scan_iter("rd:job:*", count=1000))[:sample]:
            copy = f"bench:compact:{key}"
            client.hset(copy, mapping=client.hgetall(key))
            sizes.append(int(client.memory_usage(copy, samples=0) or 0))
            client.delete(copy)
        return sum(sizes) / max(len(sizes), 1)
    finally:
        client.config_set("hash-max-listpack-value", previous)


def keys_memory(client: redis.Redis, pattern: str) -> int:
    return sum(int(client.memory_usage(k, samples=0) or 0) for k in client.scan_iter(pattern))


def batch_memory(client: redis.Redis, batch_id: str) -> int:
    keys = list(client.scan_iter(f"rd:batch:{batch_id}*"))
    return sum(int(client.memory_usage(k, samples=0) or 0) for k in keys)


def bench_enqueue(rs: RedisServer, lines: int, tmp: Path) -> dict[str, Any]:
    if True:  # one Redis for the whole run: the Celery app binds its broker url once
        use({"REDIS_URL": rs.url, "RELAYDANCE_API_KEY": "sk-bench"})
        from worker.batch import Batches, read_batch_file
        from worker.job.engine import get_engine

        file = tmp / "enqueue.jsonl"
        write_file(file, lines, "enqueue")
        engine = get_engine()
        client = engine.redis
        engine.send("relaydance.resume", "warm-up")  # open the broker connection first
        before = int(client.info("memory")["used_memory"])
        started = time.perf_counter()
        parsed = read_batch_file(file)
        validated = time.perf_counter()
        trips = RoundTrips()
        sub = Batches(engine).submit(parsed)
        round_trips = trips.stop()
        done = time.perf_counter()
        after = int(client.info("memory")["used_memory"])
        assert sub.enqueued == lines, sub
        return {
            "lines": lines,
            "validate_s": round(validated - started, 3),
            "enqueue_s": round(done - validated, 3),
            "total_s": round(done - started, 3),
            "redis_round_trips": round_trips,
            "redis_round_trips_per_line": round(round_trips / lines, 3),
            "queued_job_hash_bytes": round(job_memory(client)),
            "used_memory_per_line_bytes": round((after - before) / lines),
            "batch_keys_per_line_bytes": round(batch_memory(client, sub.batch_id) / lines),
            "broker_messages": int(client.llen("relaydance")),
        }


def _run_env(redis_url: str, sim_url: str, out: Path, *, gen_time: float) -> dict[str, str]:
    """The fleet's settings for the run: polls timed to the generation, a quick sweep."""
    return fleet_env(
        redis_url, sim_url, out,
        RELAYDANCE_MAX_CONCURRENCY=str(CAP),
        RELAYDANCE_REQUESTS_PER_SECOND="1000",
        RELAYDANCE_POLL_FIRST_DELAY=str(gen_time),
        RELAYDANCE_POLL_INTERVAL_MIN="0.2",
        RELAYDANCE_POLL_INTERVAL_MAX="0.5",
        RELAYDANCE_SWEEP_INTERVAL_SECONDS="2",
        RELAYDANCE_SWEEP_GRACE_SECONDS="5",
    )  # fmt: skip


def _wait_batch(
    batches: Any, batch_id: str, *, started: float, bound: float
) -> tuple[Any, float | None]:
    """Wait until the batch is finished; its status and when its first job was done."""
    first_done: float | None = None
    status = batches.status(batch_id)
    while not status.finished:
        time.sleep(0.5)
        status = batches.status(batch_id)
        if first_done is None and status.done:
            first_done = time.perf_counter()
        if time.perf_counter() - started > bound:
            raise RuntimeError(f"batch stalled: {status.counts}")
    return status, first_done


def _finished_memory(client: Any, batch_id: str, lines: int, *, used: int) -> dict[str, int]:
    """Redis memory once the batch is finished: per job hash, per line, per index."""
    return {
        "finished_job_hash_bytes": round(job_memory(client)),
        "finished_job_hash_listpack_bytes": round(compact_job_memory(client)),
        "reuse_index_per_done_bytes": round(keys_memory(client, "rd:reuse:*") / lines),
        "all_keys_per_finished_line_bytes": round(keys_memory(client, "rd:*") / lines),
        "batch_keys_per_line_bytes": round(batch_memory(client, batch_id) / lines),
        "used_memory_per_finished_line_bytes": round(used / lines),
    }


def bench_run(rs: RedisServer, lines: int, gen_time: float, tmp: Path) -> dict[str, Any]:
    redis.Redis.from_url(rs.url).flushall()
    with SimulatorProcess(gen_time_mean=gen_time, concurrency_cap=CAP) as sim:
        env = _run_env(rs.url, sim.url, tmp / "renders", gen_time=gen_time)
        use(env)
        procs = start_worker(env, pool="threads", concurrency=16, log=tmp / "worker.log",
                             include="tasks.batches", beat=True)  # fmt: skip
        try:
            from worker.batch import Batches, batch_report, read_batch_file, render_report
            from worker.job.engine import get_engine

            file = tmp / "run.jsonl"
            write_file(file, lines, "run")
            batches = Batches(get_engine())
            client = get_engine().redis
            before = int(client.info("memory")["used_memory"])
            started = time.perf_counter()
            sub = batches.submit(read_batch_file(file))
            status, first_done = _wait_batch(
                batches, sub.batch_id, started=started, bound=lines / (CAP / gen_time) * 4 + 120
            )
            elapsed = time.perf_counter() - started
            report_started = time.perf_counter()
            info, rows = batch_report(batches, sub.batch_id)
            (tmp / "report.csv").write_text(render_report(info, rows, fmt="csv"))
            report_s = time.perf_counter() - report_started
            stats = sim.stats()
            after = int(client.info("memory")["used_memory"])
            # Steady state: from the first finished clip to the last, cap/gen is the ceiling.
            steady = (status.done - 1) / (time.perf_counter() - (first_done or started))
            return {
                "lines": lines,
                "gen_time_s": gen_time,
                "cap": CAP,
                "done": status.done,
                "counts": status.counts,
                "elapsed_s": round(elapsed, 2),
                "throughput_jobs_s": round(lines / elapsed, 3),
                "ideal_jobs_s": CAP / gen_time,
                "fraction_of_limit": round(lines / elapsed / (CAP / gen_time), 3),
                "steady_fraction_of_limit": round(steady / (CAP / gen_time), 3),
                "sim_submissions": stats["submissions"],
                "sim_rate_limited": stats["rate_limited"],
                "sim_peak_in_flight": max(stats["peak_in_flight_by_key"].values(), default=0),
                "report_rows": len(rows),
                "report_s": round(report_s, 3),
                **_finished_memory(client, sub.batch_id, lines, used=after - before),
            }
        finally:
            stop(procs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=2000)
    parser.add_argument("--run-lines", type=int, default=1000)
    parser.add_argument("--gen-time", type=float, default=2.0)
    parser.add_argument("--enqueue-only", action="store_true", help="Skip the run (step 2).")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="relaydance-bench-batches-") as tmp,
        RedisServer() as rs,
    ):
        enqueue = bench_enqueue(rs, args.lines, Path(tmp))
        if args.enqueue_only:
            print(json.dumps(enqueue, indent=2))
            return
        run = bench_run(rs, args.run_lines, args.gen_time, Path(tmp))
    command = "python bench/bench_batches.py " + " ".join(sys.argv[1:])
    data = {"machine": machine(), "command": command.strip(), "enqueue": enqueue, "run": run}
    path = write_results("batches", data)
    print_table(enqueue, run)
    print(f"\nwrote {path}")


def print_table(enqueue: dict[str, Any], run: dict[str, Any]) -> None:
    print("| measure | value | target |\n|---|---|---|")
    print(
        f"| validate + enqueue {enqueue['lines']} lines | {enqueue['total_s']} s "
        f"(validate {enqueue['validate_s']} s, enqueue {enqueue['enqueue_s']} s) | < 3 s |"
    )
    print(f"| Redis round trips per enqueued line | {enqueue['redis_round_trips_per_line']} | |")
    print(f"| queued job hash (MEMORY USAGE) | {enqueue['queued_job_hash_bytes']} B | |")
    print(
        f"| used_memory per queued line (job + batch + message) | "
        f"{enqueue['used_memory_per_line_bytes']} B | |"
    )
    print(f"| finished job hash (MEMORY USAGE) | {run['finished_job_hash_bytes']} B | < 2048 B |")
    print(
        f"| the same, with hash-max-listpack-value 1024 | "
        f"{run['finished_job_hash_listpack_bytes']} B | < 2048 B |"
    )
    print(f"| batch keys per line | {run['batch_keys_per_line_bytes']} B | |")
    print(f"| reuse index per done job | {run['reuse_index_per_done_bytes']} B | |")
    print(f"| all rd:* keys per finished line | {run['all_keys_per_finished_line_bytes']} B | |")
    print(
        f"| used_memory per finished line (all keys) | "
        f"{run['used_memory_per_finished_line_bytes']} B | |"
    )
    print(
        f"| {run['lines']} lines, cap {CAP}, gen {run['gen_time_s']} s: throughput | "
        f"{run['throughput_jobs_s']} jobs/s = {run['fraction_of_limit']:.0%} of "
        f"{run['ideal_jobs_s']:g}/s (steady {run['steady_fraction_of_limit']:.0%}) | |"
    )
    print(
        f"| provider 429s / peak in flight | {run['sim_rate_limited']} / "
        f"{run['sim_peak_in_flight']} | 0 / {CAP} |"
    )
    print(f"| report of {run['report_rows']} rows | {run['report_s']} s | < 1 s |")


if __name__ == "__main__":
    main()
