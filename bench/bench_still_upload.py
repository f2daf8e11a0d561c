"""What it costs a storyboard clip to send its still again: the prepare step's upload of the
stored still (read back, sha256 checked, ``POST /v1/files``) before the submit, against
the submit alone when the provider's url is still trusted.

    .venv/bin/python bench/bench_still_upload.py [--clips 60] [--still-bytes 1500000]

A real redis-server and the simulator (real HTTP); the steps run in this process, one
clip at a time, alternating a clip within its still's trust (submit only) and one past it
(prepare, then submit), so both see the same machine. The still is stored as the fleet
stores it, then its file is replaced by ``--still-bytes`` of noise behind a PNG signature
(the size of a real 1024x1024 still; the simulator's gradients compress to a few kB) and
its recorded sha256 with it. Per clip: the wall time of the steps, and the Redis round
trips of the prepare. Writes bench/results/still_upload.json and prints a table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_batches import RoundTrips, use
from harness import fleet_env, machine, median, percentile, write_results

from simulator.testing import SimulatorProcess
from worker.infra.redis_server import RedisServer

CLIP_MODEL = "doubao-seedance-2-0-fast-260128"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_still(engine: Any, size: int) -> str:
    """An image job made and stored by its own steps, its file then grown to ``size``, its
    reply older than the trust."""
    from worker.job import pipeline
    from worker.job.record import JobState
    from worker.render.image_request import validate_image_request

    request = validate_image_request({"model": "grok-imagine-image", "prompt": "a keyframe"})
    still = "rdj_" + os.urandom(16).hex()
    engine.store.create(still, request=request.model_dump(mode="json"), alias="default",
                        cost=0.1, extra={"kind": "image"})  # fmt: skip
    for step in (pipeline.submit, pipeline.download):
        outcome = step(engine, still, seq=0)
        assert outcome.action == "next", outcome
    job = engine.store.get(still)
    data = PNG_SIGNATURE + os.urandom(size - len(PNG_SIGNATURE))
    Path(job.outputs[0]["path"]).write_bytes(data)
    outputs = [{**job.outputs[0], "sha256": hashlib.sha256(data).hexdigest(), "size": size}]
    engine.store.update_fields(still, states={JobState.DONE},
                               set={"outputs": json.dumps(outputs)})  # fmt: skip
    # Its reply came longer ago than its url is trusted: a clip's prepare uploads it.
    replied = time.time() - engine.settings.input_url_trust_seconds - 1
    engine.redis.hset(f"rd:job:{still}", "t_generated", repr(replied))
    return still


def make_clip(engine: Any, still: str, *, trusted: bool) -> str:
    """A clip queued from ``still``: its url trusted for an hour more (as recorded when it
    was queued) or past it."""
    from worker.render.validation import validate_request

    request = validate_request({"model": CLIP_MODEL, "prompt": "@image1 comes alive",
                                "seconds": 5, "images": [f"still://{still}/1"]})  # fmt: skip
    clip = "rdj_" + os.urandom(16).hex()
    until = time.time() + (3600 if trusted else -1)
    engine.store.create(clip, request=request.model_dump(mode="json"), alias="default",
                        cost=0.7, extra={"inputs_until": repr(until)})  # fmt: skip
    return clip


def run_clip(engine: Any, clip: str) -> dict[str, float]:
    """The clip's steps to ``submitted``: their wall time, and the prepare's round trips."""
    from worker.job import pipeline
    from worker.job.advance import plan_for

    job = engine.store.get(clip)
    plan = plan_for(job)
    steps = plan[: plan.index("submit") + 1]
    trips = RoundTrips()
    started = time.perf_counter()
    prepare_trips = 0
    for step in steps:
        outcome = getattr(pipeline, step)(engine, clip, seq=job.seq)
        assert outcome.action == "next", (step, outcome)
        if step == "prepare":
            prepare_trips = trips.count
    elapsed = time.perf_counter() - started
    trips.stop()
    assert engine.store.get(clip).state.value == "submitted"
    return {"seconds": elapsed, "prepare_round_trips": prepare_trips, "steps": len(steps)}


def measure(clips: int, still_bytes: int, tmp: Path) -> dict[str, Any]:
    from worker.job.engine import get_engine

    with RedisServer() as rs, SimulatorProcess(gen_time_mean=600.0) as sim:
        use(fleet_env(rs.url, sim.url, tmp / "renders", RELAYDANCE_MAX_CONCURRENCY="10000",
                      RELAYDANCE_REQUESTS_PER_SECOND="10000"))  # fmt: skip
        engine = get_engine()
        still = make_still(engine, still_bytes)
        runs: dict[str, list[dict[str, float]]] = {"trusted": [], "past_trust": []}
        for i in range(clips + 2):  # the first pair warms the connections up
            for kind in ("trusted", "past_trust") if i % 2 else ("past_trust", "trusted"):
                result = run_clip(engine, make_clip(engine, still, trusted=kind == "trusted"))
                if i >= 2:
                    runs[kind].append(result)
        stats = sim.stats()
    return {"runs": runs, "uploads": stats["uploads"], "stale_inputs": stats["stale_inputs"]}


def summarize(runs: list[dict[str, float]]) -> dict[str, float]:
    times = [r["seconds"] * 1000 for r in runs]
    return {
        "clips": len(runs),
        "p50_ms": round(median(times), 2),
        "p95_ms": round(percentile(times, 95), 2),
        "steps": runs[0]["steps"],
        "prepare_round_trips": median([r["prepare_round_trips"] for r in runs]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=60, help="Clips of each kind.")
    parser.add_argument("--still-bytes", type=int, default=1_500_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="relaydance-bench-still-upload-") as tmp:
        found = measure(args.clips, args.still_bytes, Path(tmp))
    trusted, past = (summarize(found["runs"][k]) for k in ("trusted", "past_trust"))
    command = "python bench/bench_still_upload.py " + " ".join(sys.argv[1:])
    data = {"machine": machine(), "command": command.strip(), "still_bytes": args.still_bytes,
            "trusted": trusted, "past_trust": past, "sim_uploads": found["uploads"],
            "sim_stale_inputs": found["stale_inputs"]}  # fmt: skip
    path = write_results("still_upload", data)
    print("| clip | steps | p50 | p95 | prepare's Redis round trips |\n|---|---|---|---|---|")
    for name, row in (("within its still's trust", trusted), ("past it", past)):
        print(f"| {name} ({row['clips']}) | {row['steps']} | {row['p50_ms']} ms | "
              f"{row['p95_ms']} ms | {row['prepare_round_trips']:g} |")  # fmt: skip
    print(f"| ratio past / within (p50) | | {past['p50_ms'] / trusted['p50_ms']:.2f} | | |")
    print(f"\nuploads {found['uploads']}, clips refused for a stale url {found['stale_inputs']}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
