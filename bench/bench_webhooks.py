"""Webhook mode against polling mode, and the webhook receiver's own speed.

    .venv/bin/python bench/bench_webhooks.py [--jobs 300] [--concurrency 8]
        [--hammer-seconds 5] [--connections 16] [--web-workers 1]

Each mode runs in a fresh interpreter, on its own redis-server and simulator (generation
time 2 s, +/-20 %), with a real Celery worker (threads pool); webhook mode adds the ASGI
receiver (``worker.web.app.serve``) as its own process. The fleet is told the true generation
time (polling at its best: the first poll lands on it) and runs a few warm-up jobs. Then
N jobs arrive, twice: at a steady rate the worker can sustain (``--rate``), and all at
once (a burst, where the delays measure the worker's backlog more than anything else):

- polls per job: the job record's ``poll_count`` (poll steps), and every provider GET of
  the task per job (polls plus the re-fetches of the webhook step and the download);
- delay from the remote task finishing (the simulator's ``ready_at``) to the download
  starting (the job's ``t_downloading``), p50 / p95; target in webhook mode: p95 < 0.5 s;
- the receiver alone: valid-token POSTs for one live job (each enqueues a task; the
  worker is stopped first) and for one finished job (answered "ignored"), from 16
  concurrent keep-alive connections for a few seconds (and from one connection, the
  latency of a lone delivery): requests/s and p50/p99 latency.
  The load generator is Python in this process, so these are lower bounds.

Prints a Markdown table and writes bench/results/webhooks.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    fleet_env,
    machine,
    percentile,
    print_table,
    run_child,
    start_web,
    start_worker,
    stop,
    use_env,
    write_results,
)

from simulator.testing import SimulatorProcess
from worker.infra.redis_server import RedisServer, free_port

MODEL = "doubao-seedance-2-0-fast-260128"
GEN = 2.0
SECRET = "bench-webhook-secret-XcbWNFC1VQhnzJNaCtmT3P6mlO9Ehoex"
TARGET_P95_S = 0.5


def _wait_all(store: Any, ids: list[str], timeout: float) -> list[Any]:
    deadline = time.monotonic() + timeout
    pending = set(ids)
    while pending and time.monotonic() < deadline:
        for job_id in list(pending):
            job = store.get(job_id)
            if job is not None and job.is_final:
                pending.discard(job_id)
        if pending:
            time.sleep(0.2)
    return [store.get(i) for i in ids]


async def _hammer(url: str, body: bytes, *, seconds: float, connections: int) -> dict[str, Any]:
    """POST ``body`` to ``url`` over ``connections`` keep-alive sockets for ``seconds``.

    Plain asyncio streams and a fixed request, not an HTTP client library: the client's
    own pool overhead would otherwise be what is measured.
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    deadline = time.perf_counter() + seconds

    async def loop() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - t0)
                status = int(head.split(b" ", 2)[1])
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    return {
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


def _fleet_settings(*, jobs: int, webhooks: bool, port: int) -> dict[str, str]:
    """The fleet's settings for one mode; webhook mode adds the receiver's URL and secret."""
    extra = {
        "RELAYDANCE_POLL_INTERVAL_MIN": "0.5",
        "RELAYDANCE_POLL_INTERVAL_MAX": "2",
        "RELAYDANCE_MAX_CONCURRENCY": str(min(max(jobs, 10), 1000)),
        "RELAYDANCE_REQUESTS_PER_SECOND": "10000",
    }
    if webhooks:
        extra["RELAYDANCE_WEBHOOK_BASE_URL"] = f"http://127.0.0.1:{port}/hooks"
        extra["RELAYDANCE_WEBHOOK_SECRET"] = SECRET
    return extra


def _enqueue_jobs(enqueue_render: Any, *, jobs: int, rate: float) -> tuple[float, list[str]]:
    """Enqueue ``jobs`` renders at ``rate`` per second (0: one burst); the start and the ids."""
    started = time.time()
    ids = []
    for i in range(jobs):
        if rate > 0:  # steady arrivals; rate 0 is one burst
            time.sleep(max(0.0, started + i / rate - time.time()))
        ids.append(enqueue_render({"model": MODEL, "prompt": f"clip {i}", "seconds": 5}))
    return started, ids


def _delivery_row(
    *, mode: str, rate: float, jobs: int, records: list[Any], started: float, sim: Any
) -> dict[str, Any]:
    """The mode's row: polls per job and the delays from the remote finish to the download."""
    from worker.job.record import JobState

    elapsed = max((j.times.get("done", 0.0) for j in records if j is not None), default=0) - started
    stats = sim.stats()
    to_download: list[float] = []
    to_done: list[float] = []
    polls: list[int] = []
    for job in records:
        if job is None or job.state is not JobState.DONE or job.remote_task_id is None:
            continue
        ready = float(httpx.get(f"{sim.root}/_sim/tasks/{job.remote_task_id}").json()["ready_at"])
        to_download.append(job.times["downloading"] - ready)
        to_done.append(job.times["done"] - ready)
        polls.append(job.poll_count)
    done = len(polls)
    return {
        "mode": mode,
        "arrival": f"{rate:g} jobs/s" if rate > 0 else "burst",
        "jobs": jobs,
        "done": done,
        "seconds": round(elapsed, 2),
        "polls_per_job": round(sum(polls) / max(done, 1), 2),
        "max_polls": max(polls, default=0),
        "jobs_with_0_polls": sum(1 for p in polls if p == 0),
        "provider_gets_per_job": round(stats["polls"] / max(done, 1), 2),
        "webhooks_sent": stats["webhooks_sent"],
        "finish_to_download_p50_s": round(percentile(to_download, 50), 3),
        "finish_to_download_p95_s": round(percentile(to_download, 95), 3),
        "finish_to_done_p50_s": round(percentile(to_done, 50), 3),
        "finish_to_done_p95_s": round(percentile(to_done, 95), 3),
    }


def _receiver_rows(
    store: Any, records: list[Any], finished_id: str, *, port: int, seconds: float,
    connections: int,
) -> dict[str, Any]:  # fmt: skip
    """The receiver alone: POSTs for a live job and for a finished one (the worker stopped)."""
    from worker.job.callback import token_for
    from worker.job.record import JobState

    row: dict[str, Any] = {}
    live_id = "rdj_" + "b" * 32
    store.create(live_id, request=records[0].request, alias="default", cost=0.0)
    store._change(live_id, states=None, to=JobState.SUBMITTED, set={"remote_task_id": "task_bench"})
    for name, job_id in (
        ("receiver_live_job", live_id),
        ("receiver_done_job", finished_id),
    ):
        url = f"http://127.0.0.1:{port}/hooks/{job_id}/{token_for(SECRET, job_id)}"
        remote = "task_bench" if job_id == live_id else records[0].remote_task_id
        body = json.dumps({"task_id": remote, "status": "succeeded"}).encode()
        asyncio.run(_hammer(url, body, seconds=0.5, connections=connections))  # warm-up
        row[name] = asyncio.run(_hammer(url, body, seconds=seconds, connections=connections))
        # One connection: the latency a lone delivery sees, with no queue.
        row[f"{name}_1_connection"] = asyncio.run(
            _hammer(url, body, seconds=min(seconds, 2.0), connections=1)
        )
    return row


def _warm_up(engine: Any, enqueue_render: Any) -> None:
    """Tell the fleet the true generation time and run three jobs through it."""
    # Polling at its best: the fleet already knows the true generation time, so the
    # first poll lands on it (webhook mode ignores it: its safety poll comes late).
    engine.redis.hset("rd:timing", f"{MODEL}:5", str(GEN))
    warm = [enqueue_render({"model": MODEL, "prompt": f"warm {i}", "seconds": 5}) for i in range(3)]
    _wait_all(engine.store, warm, timeout=180)


def run_mode(
    *,
    mode: str,
    jobs: int,
    rate: float,
    concurrency: int,
    hammer_seconds: float,
    connections: int,
    web_workers: int,
) -> dict[str, Any]:
    """One mode, start to finish, on its own Redis and simulator."""
    webhooks = mode == "webhook"
    with (
        RedisServer() as rs,
        SimulatorProcess(gen_time_mean=GEN, gen_time_jitter=0.2, seed=1) as sim,
    ):
        out = Path(tempfile.mkdtemp(prefix=f"bench-webhooks-{mode}-"))
        log = out / "fleet.log"
        port = free_port()
        extra = _fleet_settings(jobs=jobs, webhooks=webhooks, port=port)
        env = {k: v for k, v in fleet_env(rs.url, sim.url, out, **extra).items()
               if k != "RELAYDANCE_POLL_FIRST_DELAY"}  # fmt: skip
        use_env(env)
        from tasks import enqueue_render
        from worker.job.engine import get_engine

        store = get_engine().store
        web = start_web(env, port, log, workers=web_workers) if webhooks else None
        workers = start_worker(env, pool="threads", concurrency=concurrency, log=log,
                               include="tasks.webhooks")  # fmt: skip
        time.sleep(3.0)  # let the worker connect before the clock starts
        _warm_up(get_engine(), enqueue_render)
        sim.reset()
        started, ids = _enqueue_jobs(enqueue_render, jobs=jobs, rate=rate)
        records = _wait_all(store, ids, timeout=300)
        row = _delivery_row(
            mode=mode, rate=rate, jobs=jobs, records=records, started=started, sim=sim
        )
        # The receiver alone, with the worker stopped so the enqueued tasks just wait.
        stop(workers)
        if web is not None and hammer_seconds > 0:
            row |= _receiver_rows(store, records, ids[0], port=port, seconds=hammer_seconds,
                                  connections=connections)  # fmt: skip
        if web is not None:
            stop([web])
        return row


def scenario(**spec: Any) -> dict[str, Any]:
    """Run one mode in a fresh interpreter."""
    return run_child(__file__, spec)


def _print_receiver(rows: list[dict[str, Any]], *, connections: int, web_workers: int) -> None:
    """The receiver's table, from the first row (webhook mode, steady arrivals)."""
    print(f"\n| receiver ({connections} connections unless noted, {web_workers} process) "
          "| requests | requests/s | p50 ms | p99 ms | statuses |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    names = ("receiver_live_job", "receiver_done_job")
    for name in [*names, *(f"{n}_1_connection" for n in names)]:
        r = rows[0][name]
        print(f"| {name} | {r['requests']} | {r['requests_per_s']} | {r['p50_ms']} | {r['p99_ms']} "
              f"| {r['statuses']} |")  # fmt: skip


def _verdict(hook: dict[str, Any]) -> str:
    """Whether webhook mode met its targets, printed: "met" or "MISSED"."""
    verdict = (
        "met"
        if hook["finish_to_download_p95_s"] < TARGET_P95_S and hook["max_polls"] <= 1
        else "MISSED"
    )
    print(f"\nwebhook mode, steady arrivals, targets (p95 finish->download < {TARGET_P95_S} s, "
          f"<= 1 poll/job): {verdict}")  # fmt: skip
    return verdict


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--rate", type=float, default=20.0, help="steady arrivals, jobs/s")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--hammer-seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--web-workers", type=int, default=1)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_mode(**json.loads(args.one))))
        return
    rows = []
    for rate in (args.rate, 0.0):
        for mode in ("webhook", "polling"):
            hammer = args.hammer_seconds if (mode, rate) == ("webhook", args.rate) else 0.0
            rows.append(scenario(mode=mode, jobs=args.jobs, rate=rate, concurrency=args.concurrency,
                                 hammer_seconds=hammer, connections=args.connections,
                                 web_workers=args.web_workers))  # fmt: skip
    cols = ["mode", "arrival", "jobs", "done", "seconds", "polls_per_job", "max_polls",
            "jobs_with_0_polls", "provider_gets_per_job", "webhooks_sent",
            "finish_to_download_p50_s", "finish_to_download_p95_s", "finish_to_done_p50_s",
            "finish_to_done_p95_s"]  # fmt: skip
    print_table(rows, cols)
    _print_receiver(rows, connections=args.connections, web_workers=args.web_workers)
    verdict = _verdict(rows[0])  # webhook mode, steady arrivals
    path = write_results("webhooks", {
        "machine": machine(),
        "generation_s": GEN,
        "worker": f"threads x{args.concurrency}",
        "receiver": f"{args.web_workers} uvicorn process(es), {args.connections} connections",
        "command": " ".join(["bench/bench_webhooks.py", *sys.argv[1:]]),
        "rows": rows,
        "targets": {"finish_to_download_p95_s": TARGET_P95_S, "max_polls_per_job": 1},
        "targets_met": verdict == "met",
    })  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
