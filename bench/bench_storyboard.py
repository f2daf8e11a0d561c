"""Storyboards: enqueueing a file of still -> clip pairs, and the time from a still being
stored to its clip being submitted.

    .venv/bin/python bench/bench_storyboard.py [--pairs 500] [--runs 3] [--run-pairs 100]
        [--wave 5] [--gen-time 0.5]

1. Enqueue: a ``--pairs`` storyboard file (``2 * pairs`` lines: an image line with an
   ``id``, then a clip line whose ``refs`` name it) is read, validated (refs included),
   planned and enqueued with no worker running: stills queued, clips written in
   ``waiting_for_input``, linked both ways. Timed ``--runs`` times on an emptied Redis
   (the median is the figure), with the Redis round trips of the enqueue. Target: under
   1 s for 1,000 lines.
2. Chain: ``--run-pairs`` pairs through one worker (16 threads) and beat (the sweeper)
   against the simulator: stills answer at once, clips generate for ``--gen-time`` s,
   and no concurrency cap is near (the simulator has none, the fleet's is 1,000), so a
   clip's slot is always free. Per pair, from the still's record reaching ``done`` (its
   image stored: ``t_done``) to its clip's record reaching ``submitted`` (the provider
   accepted the POST: ``t_submitted``), with the legs between: the notice that queues
   the clip (``t_queued``) and the step that starts the POST (``t_submitting``). Target:
   p95 under 0.5 s. Run twice: *paced*, storyboards of ``--wave`` pairs one after the
   other, so the worker has a thread free when a still is stored; and *burst*, all pairs
   in one storyboard, where a clip's step waits in the broker queue behind the other
   stills' steps.

Writes bench/results/storyboard.json and prints a Markdown table.
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

from bench_batches import RoundTrips, use
from harness import fleet_env, machine, median, percentile, start_worker, stop, write_results

from simulator.testing import SimulatorProcess
from worker.infra.redis_server import RedisServer

IMAGE_MODEL = "grok-imagine-image"
CLIP_MODEL = "doubao-seedance-2-0-fast-260128"
FLEET_CAP = 1000  # far above the run's clips: a clip never waits for a slot
THREADS = 16  # the worker's threads
LEGS = ("queued", "submitting", "submitted")  # the clip's times after its still's ``done``


def write_storyboard(path: Path, pairs: int, tag: str) -> None:
    """``pairs`` still -> clip pairs: the still's line names itself, the clip refs it."""
    with path.open("w") as out:
        for i in range(pairs):
            key = f"k{i}"
            still = {"id": key, "model": IMAGE_MODEL, "prompt": f"{tag} keyframe {i}: a harbour"}
            clip = {"model": CLIP_MODEL, "prompt": f"{tag} shot {i}: the harbour at dusk, "
                    "boats drifting", "seconds": 5, "refs": [key]}  # fmt: skip
            out.write(json.dumps(still) + "\n" + json.dumps(clip) + "\n")


def _enqueue_once(engine: Any, file: Path) -> dict[str, Any]:
    """Read, validate and enqueue ``file`` once; its timings and round trips."""
    from worker.batch import Batches, read_batch_file

    started = time.perf_counter()
    parsed = read_batch_file(file)
    validated = time.perf_counter()
    trips = RoundTrips()
    batches = Batches(engine)
    sub = batches.submit(parsed)
    round_trips = trips.stop()
    done = time.perf_counter()
    assert sub.enqueued == sub.lines, sub
    waiting = batches.status(sub.batch_id).counts.get("waiting_for_input", 0)
    return {
        "validate_s": validated - started,
        "enqueue_s": done - validated,
        "total_s": done - started,
        "round_trips": round_trips,
        "waiting": int(waiting),
    }


def bench_enqueue(rs: RedisServer, pairs: int, runs: int, tmp: Path) -> dict[str, Any]:
    """The storyboard file enqueued ``runs`` times, Redis emptied before each."""
    use({"REDIS_URL": rs.url, "RELAYDANCE_API_KEY": "sk-bench"})
    from worker.job.engine import get_engine

    engine = get_engine()
    client = engine.redis
    samples = []
    for run in range(runs):
        client.flushall()
        file = tmp / f"enqueue-{run}.jsonl"
        write_storyboard(file, pairs, f"enqueue {run}")
        engine.send("relaydance.resume", "warm-up")  # open the broker connection first
        samples.append(_enqueue_once(engine, file))
    lines = 2 * pairs
    trips = int(median([s["round_trips"] for s in samples]))
    return {
        "lines": lines,
        "pairs": pairs,
        "runs": runs,
        "validate_s": round(median([s["validate_s"] for s in samples]), 3),
        "enqueue_s": round(median([s["enqueue_s"] for s in samples]), 3),
        "total_s": round(median([s["total_s"] for s in samples]), 3),
        "total_s_each": [round(s["total_s"], 3) for s in samples],
        "redis_round_trips": trips,
        "redis_round_trips_per_line": round(trips / lines, 3),
        "broker_messages": int(client.llen("relaydance")),
        "clips_waiting_for_input": samples[-1]["waiting"],
    }


def _run_env(redis_url: str, sim_url: str, out: Path, *, gen_time: float) -> dict[str, str]:
    """The fleet's settings for the run: no slot limit near, polls timed to the clips."""
    return fleet_env(
        redis_url, sim_url, out,
        RELAYDANCE_MAX_CONCURRENCY=str(FLEET_CAP),
        RELAYDANCE_REQUESTS_PER_SECOND="1000",
        RELAYDANCE_POLL_FIRST_DELAY=str(gen_time),
        RELAYDANCE_POLL_INTERVAL_MIN="0.2",
        RELAYDANCE_POLL_INTERVAL_MAX="0.5",
    )  # fmt: skip


def _wait_batch(batches: Any, batch_id: str, *, bound: float) -> tuple[Any, int]:
    """Wait until the batch is finished; its status and the longest the broker queue was
    seen (step messages no thread had taken yet), sampled every 0.2 s."""
    started = time.perf_counter()
    status = batches.status(batch_id)
    backlog = 0
    while not status.finished:
        time.sleep(0.2)
        backlog = max(backlog, int(batches.engine.redis.llen("relaydance")))
        status = batches.status(batch_id)
        if time.perf_counter() - started > bound:
            raise RuntimeError(f"storyboard stalled: {status.counts}")
    return status, backlog


def pair_latencies(batches: Any, batch_id: str) -> list[dict[str, float]]:
    """Per pair: seconds from the still's ``done`` to each of its clip's :data:`LEGS`."""
    from worker.batch import batch_report
    from worker.job.engine import get_engine

    _, rows = batch_report(batches, batch_id)
    ids = [row.job_id or "" for row in rows]
    jobs = dict(zip(ids, get_engine().store.get_many(ids), strict=True))
    by_line = {row.line: jobs[row.job_id or ""] for row in rows}
    pairs = []
    for row in rows:
        if row.made_from is None:
            continue
        still, clip = by_line[int(row.made_from)], by_line[row.line]
        assert still is not None, row
        assert clip is not None, row
        done = still.times["done"]
        pairs.append({leg: clip.times[leg] - done for leg in LEGS})
    return pairs


def summarize(pairs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """p50/p95/max of each leg, in seconds."""
    summary = {}
    for leg in LEGS:
        values = [p[leg] for p in pairs]
        summary[leg] = {
            "p50": round(percentile(values, 50), 3),
            "p95": round(percentile(values, 95), 3),
            "max": round(max(values), 3),
        }
    return summary


def _storyboards(batches: Any, pairs: int, wave: int, tmp: Path, tag: str) -> dict[str, Any]:
    """``pairs`` pairs as storyboards of ``wave`` pairs, each sent when the last is
    finished; their per-pair latencies and how long it all took."""
    from worker.batch import read_batch_file

    latencies: list[dict[str, float]] = []
    counts: dict[str, int] = {}
    backlog = 0
    started = time.perf_counter()
    for first in range(0, pairs, wave):
        file = tmp / f"{tag}-{first}.jsonl"
        write_storyboard(file, min(wave, pairs - first), f"{tag} {first}")
        sub = batches.submit(read_batch_file(file))
        status, seen = _wait_batch(batches, sub.batch_id, bound=wave * 2 + 120)
        backlog = max(backlog, seen)
        latencies += pair_latencies(batches, sub.batch_id)
        for state, count in status.counts.items():
            counts[state] = counts.get(state, 0) + count
    return {
        "pairs": pairs,
        "pairs_per_storyboard": wave,
        "counts": counts,
        "elapsed_s": round(time.perf_counter() - started, 2),
        "peak_broker_backlog": backlog,
        "still_done_to_clip": summarize(latencies),
    }


def bench_run(rs: RedisServer, pairs: int, wave: int, gen_time: float, tmp: Path) -> dict[str, Any]:
    """Two runs of ``pairs`` pairs on one worker: storyboards of ``wave`` pairs one after
    the other (the worker idle when a still is stored), then all in one storyboard."""
    redis.Redis.from_url(rs.url).flushall()
    with SimulatorProcess(gen_time_mean=gen_time) as sim:
        env = _run_env(rs.url, sim.url, tmp / "renders", gen_time=gen_time)
        use(env)
        procs = start_worker(env, pool="threads", concurrency=THREADS, log=tmp / "worker.log",
                             include="tasks.batches", beat=True)  # fmt: skip
        try:
            from worker.batch import Batches
            from worker.job.engine import get_engine

            batches = Batches(get_engine())
            _storyboards(batches, 1, 1, tmp, "warm-up")  # the worker is up and connected
            paced = _storyboards(batches, pairs, wave, tmp, "paced")
            burst = _storyboards(batches, pairs, pairs, tmp, "burst")
            stats = sim.stats()
        finally:
            stop(procs)
    return {
        "gen_time_s": gen_time,
        "fleet_cap": FLEET_CAP,
        "worker_threads": THREADS,
        "paced": paced,
        "burst": burst,
        "sim_image_requests": stats["image_requests"],
        "sim_submissions": stats["submissions"],
        "sim_rate_limited": stats["rate_limited"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--run-pairs", type=int, default=100)
    parser.add_argument("--wave", type=int, default=5, help="Pairs per paced storyboard.")
    parser.add_argument("--gen-time", type=float, default=0.5)
    parser.add_argument("--enqueue-only", action="store_true", help="Skip the run (step 2).")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="relaydance-bench-storyboard-") as tmp,
        RedisServer() as rs,
    ):
        enqueue = bench_enqueue(rs, args.pairs, args.runs, Path(tmp))
        if args.enqueue_only:
            print(json.dumps(enqueue, indent=2))
            return
        run = bench_run(rs, args.run_pairs, args.wave, args.gen_time, Path(tmp))
    command = "python bench/bench_storyboard.py " + " ".join(sys.argv[1:])
    data = {"machine": machine(), "command": command.strip(), "enqueue": enqueue, "run": run}
    path = write_results("storyboard", data)
    print_table(enqueue, run)
    print(f"\nwrote {path}")


def print_table(enqueue: dict[str, Any], run: dict[str, Any]) -> None:
    print("| measure | value | target |\n|---|---|---|")
    print(
        f"| validate + enqueue {enqueue['lines']} lines ({enqueue['pairs']} pairs), median of "
        f"{enqueue['runs']} | {enqueue['total_s']} s (validate {enqueue['validate_s']} s, "
        f"enqueue {enqueue['enqueue_s']} s) | < 1 s |"
    )
    print(
        f"| Redis round trips of the enqueue | {enqueue['redis_round_trips']} "
        f"({enqueue['redis_round_trips_per_line']} per line) | |"
    )
    names = {"queued": "clip queued", "submitting": "clip's POST starts",
             "submitted": "clip submitted"}  # fmt: skip
    for mode in ("paced", "burst"):
        part = run[mode]
        shape = f"{part['pairs']} pairs, {part['pairs_per_storyboard']} per storyboard"
        for leg, name in names.items():
            figures = part["still_done_to_clip"][leg]
            target = "p95 < 0.5 s" if leg == "submitted" else ""
            print(
                f"| {shape}: still stored -> {name} | p50 {figures['p50']} s, "
                f"p95 {figures['p95']} s, max {figures['max']} s | {target} |"
            )
        print(f"| {shape}: most steps waiting in the broker | {part['peak_broker_backlog']} | |")
    print(f"| provider 429s | {run['sim_rate_limited']} | 0 |")


if __name__ == "__main__":
    main()
