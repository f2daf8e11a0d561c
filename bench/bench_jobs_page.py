"""Render time and Redis commands per page of the jobs page, over 10,000 and 100,000 jobs.

Run: ``.venv/bin/python bench/bench_jobs_page.py`` (about a minute; ``--sizes 10000`` for
one size). Jobs are written as the store writes them (record, state set, creation-time
indexes) into a private redis-server; each page is then answered by the page's own
handler (:class:`worker.web.jobs_page.JobsPage`: Redis reads and templating, no HTTP server),
signed in with a bearer token. Redis commands are counted with ``INFO commandstats``.
Prints a Markdown table and writes ``bench/results/jobs_page.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from bench.harness import machine, median, percentile, write_results  # noqa: E402
from worker.infra.redis_server import RedisServer  # noqa: E402

MODEL = "doubao-seedance-2-0-fast-260128"
TOKEN = "bench-token-e8FOEPmb3TuSDaeuYCON0P8qlCF0NOz-"


def fill(engine: Any, count: int) -> list[str]:
    """``count`` jobs in mixed states and two aliases, oldest first."""
    from worker.render.validation import validate_request

    base = validate_request({"model": MODEL, "prompt": "x", "seconds": 5}).model_dump(mode="json")
    states = ["done"] * 8 + ["failed", "queued"]
    ids, now = [], time.time() - count
    pipe = engine.redis.pipeline(transaction=False)
    for i in range(count):
        job_id = f"rdj_{i:032x}"
        fields = engine.store.new_fields(
            request={**base, "prompt": f"shot {i} of the harbour at dawn"},
            alias="tenant-a" if i % 4 == 0 else "default", cost=0.7, now=now + i, due=now + i,
        )  # fmt: skip
        fields["state"] = states[i % len(states)]
        engine.store.queue_create(pipe, job_id, fields, due=now + i)
        ids.append(job_id)
        if len(pipe) >= 20_000:
            pipe.execute()
    pipe.execute()
    return ids


def measure(client: redis.Redis, call: Callable[[], Any], repeat: int) -> tuple[list[float], int]:
    """Seconds of each call, and the Redis commands one call costs."""
    call()  # warm: templates compiled, scripts loaded
    client.config_resetstat()
    call()
    stats = client.info("commandstats")
    commands = sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times, commands


def run_size(server: RedisServer, count: int, repeat: int) -> list[dict[str, Any]]:
    from config.settings import get_settings
    from worker.job.engine import get_engine, reset_engine
    from worker.web.jobs_page import Credentials, JobsPage, UiRequest

    client = redis.Redis.from_url(server.url, decode_responses=True)
    client.flushall()
    get_settings.cache_clear()
    reset_engine()
    engine = get_engine()
    ids = fill(engine, count)
    page = JobsPage(Credentials(token=TOKEN))

    def get(path: str, **query: str) -> Callable[[], Any]:
        request = UiRequest("GET", path, "/ui", query=query,
                            headers={"authorization": f"Bearer {TOKEN}", "host": "h"})  # fmt: skip

        def call() -> None:
            answer = page(request)
            assert answer.status == 200, (path, answer.status)

        return call

    cases = [
        ("newest 50", get("/jobs")),
        ("50 from the middle", get("/jobs", after=ids[count // 2])),
        ("one alias (its index)", get("/jobs", alias="tenant-a")),
        ("state=failed (window)", get("/jobs", state="failed")),
        ("prompt search (window)", get("/jobs", q="shot 77 of")),
        ("a job id", get("/jobs", q=ids[count // 3])),
        ("one job's page", get(f"/jobs/{ids[-1]}")),
    ]
    rows = []
    for name, call in cases:
        times, commands = measure(client, call, repeat)
        rows.append({"jobs": count, "page": name, "p50_ms": round(median(times) * 1e3, 2),
                     "p95_ms": round(percentile(times, 95) * 1e3, 2),
                     "redis_commands": commands})  # fmt: skip
    client.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--repeat", type=int, default=100)
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with RedisServer() as server:
        os.environ.update({"REDIS_URL": server.url, "RELAYDANCE_API_KEY": "sk-bench",
                           "RELAYDANCE_UI_TOKEN": TOKEN})  # fmt: skip
        for size in [int(s) for s in args.sizes.split(",")]:
            rows.extend(run_size(server, size, args.repeat))
    print(f"machine: {machine()}\n")
    print("| jobs | page | p50 | p95 | Redis commands |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['jobs']:,} | {r['page']} | {r['p50_ms']} ms | {r['p95_ms']} ms "
              f"| {r['redis_commands']} |")  # fmt: skip
    write_results("jobs_page", {"machine": machine(), "rows": rows})


if __name__ == "__main__":
    main()
