"""Latency and throughput of the per-key limits against a private redis-server.

Run: ``.venv/bin/python bench/bench_limits.py`` (about 15 s). Prints a Markdown table and
writes ``bench/results/limits.json``. Every call is one round trip to Redis (one script),
so the figures are dominated by the loopback round trip and redis-py's own overhead; a
PING is measured alongside as the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from worker.infra.redis_server import RedisServer  # noqa: E402
from worker.limits import KeyLimits  # noqa: E402

LIMIT = 100_000  # never reached: the benchmark measures the cost of a grant, not a wait


def latencies(op: Callable[[int], object], count: int) -> list[float]:
    """Seconds taken by each of ``count`` sequential calls ``op(i)``."""
    out = []
    for i in range(count):
        start = time.perf_counter()
        op(i)
        out.append(time.perf_counter() - start)
    return out


def throughput(op: Callable[[int, int], object], *, threads: int, seconds: float) -> float:
    """Calls per second of ``op(thread, i)`` from ``threads`` threads for ``seconds``."""
    done = [0] * threads
    stop = threading.Event()

    def loop(t: int) -> None:
        i = 0
        while not stop.is_set():
            op(t, i)
            i += 1
        done[t] = i

    workers = [threading.Thread(target=loop, args=(t,)) for t in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join()
    return sum(done) / (time.perf_counter() - start)


def micros(values: list[float]) -> dict[str, float]:
    """Median and 99th percentile in microseconds."""
    ordered = sorted(values)
    return {
        "median_us": round(statistics.median(ordered) * 1e6, 1),
        "p99_us": round(ordered[int(len(ordered) * 0.99) - 1] * 1e6, 1),
    }


def latency_rows(client: redis.Redis, limits: KeyLimits, n: int) -> dict[str, dict[str, float]]:
    """Median and p99 of ``n`` sequential calls of each operation, a PING the floor."""
    latencies(lambda i: limits.throttle("warm-up", rate=1e9), n)  # connections, caches
    rows: dict[str, dict[str, float]] = {}
    rows["PING (floor)"] = micros(latencies(lambda i: client.ping(), n))
    rows["acquire (granted)"] = micros(
        latencies(lambda i: limits.acquire("bench", f"a{i}", limit=LIMIT), n)
    )
    rows["release"] = micros(latencies(lambda i: limits.release("bench", f"a{i}", limit=LIMIT), n))
    limits.acquire("full", "holder", limit=1)
    rows["acquire (joins line)"] = micros(
        latencies(lambda i: limits.acquire("full", f"w{i}", limit=1), n)
    )
    rows["release (hands off)"] = micros(
        latencies(lambda i: limits.release("full", "holder" if i == 0 else f"w{i - 1}", limit=1), n)
    )
    rows["throttle (go)"] = micros(latencies(lambda i: limits.throttle("bench", rate=1e6), n))
    rows["throttle (defer)"] = micros(
        latencies(lambda i: limits.throttle("slow", rate=0.001, burst=1), n)
    )
    rows["on_success"] = micros(latencies(lambda i: limits.on_success("bench", limit=10), n))
    rows["snapshot"] = micros(latencies(lambda i: limits.snapshot("bench", limit=10), n))
    return rows


def print_report(result: dict[str, Any], out: Path) -> None:
    """The Markdown tables of ``result``."""
    rows, n = result["latency"], result["sequential_calls"]
    print(
        f"Per-key limits, redis-server {result['redis_server']}, Python {result['python']}, "
        f"{result['cpus']} CPUs, {n} sequential calls each\n"
    )
    print("| operation | median µs | p99 µs |")
    print("|---|---:|---:|")
    for name, figures in rows.items():
        print(f"| {name} | {figures['median_us']} | {figures['p99_us']} |")
    print(f"\n| {result['throughput']['threads']} threads, one client | calls/s |")
    print("|---|---:|")
    print(
        f"| acquire + release (pairs/s) | {result['throughput']['acquire_release_pairs_per_s']} |"
    )
    print(f"| throttle | {result['throughput']['throttle_calls_per_s']} |")
    print(f"\nwritten: {out.relative_to(ROOT)}")


def main() -> None:
    """Run every measurement and report it."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=5000, help="sequential calls per operation")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=2.0, help="per throughput run")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "limits.json")
    args = parser.parse_args()

    with RedisServer() as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        limits = KeyLimits(client)
        n = args.count
        rows = latency_rows(client, limits, n)
        client.flushall()
        pair = throughput(
            lambda t, i: (
                limits.acquire("bench", f"t{t}-{i}", limit=LIMIT),
                limits.release("bench", f"t{t}-{i}", limit=LIMIT),
            ),
            threads=args.threads,
            seconds=args.seconds,
        )
        throttles = throughput(
            lambda t, i: limits.throttle("bench", rate=1e9),
            threads=args.threads,
            seconds=args.seconds,
        )
        info = client.info("server")
        client.close()

    result = {
        "command": ".venv/bin/python bench/bench_limits.py",
        "python": platform.python_version(),
        "redis_server": info.get("redis_version"),
        "cpus": os.cpu_count(),
        "sequential_calls": n,
        "latency": rows,
        "throughput": {
            "threads": args.threads,
            "acquire_release_pairs_per_s": round(pair),
            "acquire_release_calls_per_s": round(2 * pair),
            "throttle_calls_per_s": round(throttles),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print_report(result, args.out)


if __name__ == "__main__":
    main()
