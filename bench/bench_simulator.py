"""Benchmark the simulator: poll throughput, memory with 10,000 tasks in flight, big downloads.

Run: ``.venv/bin/python bench/bench_simulator.py`` (about 35 s). Starts ``python -m
simulator`` on a free loopback port, then

1. submits 10,000 tasks with a one-hour generation time, so all stay in flight, and reads
   the simulator's resident memory (psutil);
2. polls random tasks among those for a fixed time from several load-generator
   processes, each keeping many keep-alive connections busy (a small asyncio HTTP/1.1
   client, so the generator costs less CPU than the server it measures), then with one
   ``httpx.AsyncClient`` of 16 connections for comparison (on this machine its pool gets
   slower, not faster, with hundreds of connections);
3. downloads one 512 MB padded mp4 and reads the simulator's memory again.

Prints a Markdown table and writes ``bench/results/simulator.json``. All traffic goes to
127.0.0.1; every loop is bounded in time and count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulator.testing import SimulatorProcess

KEY = "sk-bench-0001"
BODY = {
    "model": "doubao-seedance-2-0-720p",
    "prompt": "a red kite over a beach",
    "seconds": "5",
    "metadata": {"ratio": "16:9", "resolution": "720p"},
}
RESULTS = Path(__file__).resolve().parent / "results" / "simulator.json"


def rss_mb(pid: int) -> float:
    """Resident memory of a process, MiB."""
    return float(psutil.Process(pid).memory_info().rss) / 2**20


class RawConnection:
    """A minimal HTTP/1.1 keep-alive client: far cheaper per request than a full client."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        """Send one request and read the whole answer (Content-Length framed)."""
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Authorization: Bearer {KEY}\r\n"
        )
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self._writer.write(head.encode() + b"\r\n" + body)
        answer = await self._reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in answer.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return int(answer[9:12]), await self._reader.readexactly(length)

    def close(self) -> None:
        """Close the socket."""
        if self._writer is not None:
            self._writer.close()


async def submit_many(port: int, count: int, *, conns: int = 32) -> tuple[list[str], float]:
    """Submit ``count`` tasks; returns their ids and the submit rate per second."""
    ids: list[str] = []
    remaining = iter(range(count))
    body = json.dumps(BODY).encode()

    async def worker() -> None:
        conn = RawConnection(port)
        try:
            for _ in remaining:
                status, answer = await conn.request("POST", "/v1/video/generations", body)
                if status != 200:
                    raise RuntimeError(f"submit answered {status}: {answer[:200]!r}")
                ids.append(json.loads(answer)["task_id"])
        finally:
            conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conns)))
    return ids, count / (time.perf_counter() - started)


async def _poll_loop(
    port: int, ids: list[str], deadline: float, counts: list[int], rng: random.Random
) -> None:
    conn = RawConnection(port)
    try:
        while time.monotonic() < deadline:
            status, _ = await conn.request("GET", f"/v1/video/generations/{rng.choice(ids)}")
            counts[0 if status == 200 else 1] += 1
    finally:
        conn.close()


def raw_poll_process(port: int, ids: list[str], start_at: float, seconds: float, conns: int) -> Any:
    """One load-generator process: ``conns`` keep-alive connections polling until the end."""

    async def run() -> list[int]:
        counts = [0, 0]  # ok, other
        rng = random.Random(len(ids) + conns)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(_poll_loop(port, ids, deadline, counts, rng) for _ in range(conns)))
        return counts

    return asyncio.run(run())


def raw_polls(
    port: int, ids: list[str], *, seconds: float, procs: int, conns: int
) -> dict[str, Any]:
    """Polls per second from ``procs`` processes of ``conns`` connections each."""
    ctx = multiprocessing.get_context("spawn")
    start_at = time.time() + 2.0  # let every process start before the clock runs
    with ctx.Pool(procs) as pool:
        results = pool.starmap(raw_poll_process, [(port, ids, start_at, seconds, conns)] * procs)
    ok = sum(r[0] for r in results)
    other = sum(r[1] for r in results)
    return {"polls_per_s": ok / seconds, "non_200": other, "connections": procs * conns}


async def httpx_polls(url: str, ids: list[str], *, seconds: float, conns: int) -> dict[str, Any]:
    """Polls per second from one process with ``httpx.AsyncClient``."""
    counts = [0, 0]
    rng = random.Random(1)
    headers = {"Authorization": f"Bearer {KEY}"}
    limits = httpx.Limits(max_connections=conns, max_keepalive_connections=conns)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits) as client:
        deadline = time.monotonic() + seconds

        async def worker() -> None:
            while time.monotonic() < deadline:
                response = await client.get(f"/video/generations/{rng.choice(ids)}")
                counts[0 if response.status_code == 200 else 1] += 1

        await asyncio.gather(*(worker() for _ in range(conns)))
    return {"polls_per_s": counts[0] / seconds, "non_200": counts[1], "connections": conns}


async def big_download(sim: SimulatorProcess, task_id: str, size: int) -> dict[str, Any]:
    """Download one padded mp4 of ``size`` bytes, tracking the simulator's peak memory."""
    sim.configure(video_bytes=size)
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(headers=headers, timeout=60) as client:
        url = (await client.get(f"{sim.url}/video/generations/{task_id}")).json()["url"]
        peak, received = rss_mb(sim.pid), 0
        started = time.perf_counter()
        async with client.stream("GET", url) as response:
            async for chunk in response.aiter_raw():
                received += len(chunk)
                if received % (32 * 2**20) < len(chunk):
                    peak = max(peak, rss_mb(sim.pid))
        elapsed = time.perf_counter() - started
    sim.configure(video_bytes=0)
    return {"bytes": received, "mb_per_s": received / 2**20 / elapsed, "peak_rss_mb": peak}


def table(rows: list[tuple[str, str, str]]) -> str:
    """A Markdown table of (measure, result, target)."""
    lines = ["| measure | result | target |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def summary(
    args: argparse.Namespace, *, in_flight: int, idle_rss: float, loaded_rss: float,
    submit_rate: float, raw: dict[str, float], via_httpx: dict[str, float],
    download: dict[str, float],
) -> str:  # fmt: skip
    """The Markdown table of the figures against their targets."""
    return table(
        [
            ("tasks in flight", f"{in_flight:,}", f"{args.tasks:,}"),
            ("simulator RSS, idle", f"{idle_rss:.0f} MB", ""),
            (
                f"simulator RSS, {args.tasks:,} tasks in flight",
                f"{loaded_rss:.0f} MB",
                "< 300 MB",
            ),
            ("submits/s (32 keep-alive connections)", f"{submit_rate:,.0f}", ""),
            (
                f"polls/s ({args.procs} procs x {args.conns} keep-alive connections)",
                f"{raw['polls_per_s']:,.0f}",
                ">= 2,000",
            ),
            (
                "polls/s (one httpx.AsyncClient, 16 connections)",
                f"{via_httpx['polls_per_s']:,.0f}",
                "",
            ),
            ("non-200 poll answers", f"{raw['non_200'] + via_httpx['non_200']}", "0"),
            (
                f"{args.download_mb} MB download",
                f"{download['mb_per_s']:,.0f} MB/s, peak RSS {download['peak_rss_mb']:.0f} MB",
                "flat memory",
            ),
        ]
    )


def main() -> None:
    """Run every measurement and report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each poll run")
    parser.add_argument("--procs", type=int, default=2, help="load-generator processes")
    parser.add_argument("--conns", type=int, default=128, help="connections per process")
    parser.add_argument("--download-mb", type=int, default=512)
    args = parser.parse_args()

    with SimulatorProcess(gen_time_mean=3600, gen_time_jitter=0.1, seed=1) as sim:
        idle_rss = rss_mb(sim.pid)
        ids, submit_rate = asyncio.run(submit_many(sim.port, args.tasks))
        stats = sim.stats()
        loaded_rss = rss_mb(sim.pid)
        raw = raw_polls(sim.port, ids, seconds=args.seconds, procs=args.procs, conns=args.conns)
        via_httpx = asyncio.run(httpx_polls(sim.url, ids, seconds=args.seconds, conns=16))
        sim.configure(gen_time_mean=0.0)
        done = asyncio.run(submit_many(sim.port, 1, conns=1))[0][0]
        download = asyncio.run(big_download(sim, done, args.download_mb * 2**20))
        final_rss = rss_mb(sim.pid)

    results = {
        "machine": {"cpus": psutil.cpu_count(), "python": platform.python_version()},
        "tasks_in_flight": stats["in_flight_by_key"],
        "submits_per_s": round(submit_rate),
        "rss_idle_mb": round(idle_rss, 1),
        "rss_with_tasks_mb": round(loaded_rss, 1),
        "rss_per_task_bytes": round((loaded_rss - idle_rss) * 2**20 / args.tasks),
        "polls_raw": {k: round(v) for k, v in raw.items()},
        "polls_httpx": {k: round(v) for k, v in via_httpx.items()},
        "download": {k: round(v, 1) for k, v in download.items()},
        "rss_after_download_mb": round(final_rss, 1),
        "poll_seconds": args.seconds,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    in_flight = sum(stats["in_flight_by_key"].values())
    print(
        summary(args, in_flight=in_flight, idle_rss=idle_rss, loaded_rss=loaded_rss,
                submit_rate=submit_rate, raw=raw, via_httpx=via_httpx, download=download)
    )  # fmt: skip
    print(f"\nwritten to {RESULTS}")


if __name__ == "__main__":
    main()
