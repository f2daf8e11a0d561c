"""What one job costs the worker: CPU in the steps themselves, and Redis round trips.

``.venv/bin/python bench/bench_cpu.py [--jobs 300] [--profile]``

The steps (submit, poll, download: it finishes the job) run in this process, one job after another,
against a private redis-server and the simulator (generation time 0, so the first poll
finds the clip ready), with no Celery in between: this isolates the cost of the fleet's
own code from Celery's (which bench_pipeline.py measures with real workers). Reported:
CPU milliseconds per job, Redis commands per job (from the server's command stats, those
run inside scripts included), Redis round trips per job (requests sent) and,
with ``--profile``, the functions the time goes to.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import machine, write_results

MODEL = "doubao-seedance-2-0-fast-260128"


class RoundTrips:
    """Counts requests this process sends to Redis (a pipeline is one)."""

    def __init__(self) -> None:
        import redis.connection

        self.count = 0
        original = redis.connection.AbstractConnection.send_packed_command

        def counting(conn: Any, command: Any, check_health: bool = True) -> None:
            self.count += 1
            original(conn, command, check_health)

        redis.connection.AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]


def redis_commands(client: Any) -> int:
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


def run(jobs: int, *, profile: bool) -> dict[str, Any]:
    from config.settings import load_settings
    from simulator.testing import SimulatorProcess
    from tests.pipeline_helpers import make_engine, run_step
    from worker.infra.redis_server import RedisServer
    from worker.render.validation import validate_request

    out = Path(tempfile.mkdtemp(prefix="bench-cpu-"))
    with RedisServer() as server, SimulatorProcess(gen_time_mean=0.0, gen_time_jitter=0.0) as sim:
        settings = load_settings(
            redis_url=server.url, api_key="sk-bench-cpu", base_url=sim.url,
            allow_local_urls=True, output_dir=out, poll_first_delay=0.0,
            requests_per_second=10000, max_concurrency=100000,
        )  # fmt: skip
        engine = make_engine(settings)
        request = validate_request({"model": MODEL, "prompt": "a paper boat"})
        ids = [engine.store.create_render(request, alias="default") for _ in range(jobs)]
        warm = ids.pop(0)
        for step in ("submit", "poll", "download"):  # the download finishes the job
            run_step(engine, step, warm, seq=0)
        before = redis_commands(engine.redis)
        trips = RoundTrips()
        profiler = cProfile.Profile() if profile else None
        cpu0 = time.process_time()
        if profiler:
            profiler.enable()
        for job_id in ids:
            for step in ("submit", "poll", "download"):
                outcome = run_step(engine, step, job_id, seq=0)
                assert outcome.action == "next", (step, outcome)
        if profiler:
            profiler.disable()
        cpu = time.process_time() - cpu0
        round_trips = trips.count
        commands = redis_commands(engine.redis) - before
        states = {engine.store.get(i).state.value for i in ids}  # type: ignore[union-attr]
        engine.close()
    assert states == {"done"}, states
    row = {
        "jobs": len(ids),
        "cpu_ms_per_job": round(1000 * cpu / len(ids), 2),
        "redis_commands_per_job": round(commands / len(ids), 1),  # in scripts too
        "redis_round_trips_per_job": round(round_trips / len(ids), 1),
    }
    if profiler:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
        row["profile"] = text.getvalue()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    row = run(args.jobs, profile=args.profile)
    if "profile" in row:
        print(row.pop("profile"))
    print(json.dumps(row))
    write_results("cpu", {"machine": machine(), **row})


if __name__ == "__main__":
    main()
