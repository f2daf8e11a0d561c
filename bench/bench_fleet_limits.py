"""Per-key limits across a fleet of two workers, with Celery's own ``rate_limit`` alongside.

    .venv/bin/python bench/bench_fleet_limits.py [--jobs-per-key 200] [--only NAME,...]
        [--baseline-window 60]

Every scenario runs in a fresh interpreter (a Celery app binds to one broker) on its own
redis-server and simulator: cap 10 per key, generation time 2 s +/- 20 %, ``Retry-After:
1``, three keys. The fleet is two workers (``--pool threads --concurrency 8``, distinct
hostnames) and one beat, with ``RELAYDANCE_POLL_INTERVAL_MIN=0.25``, ``..._MAX=1``,
``RELAYDANCE_REQUESTS_PER_SECOND=200`` (never binding) and the learned generation time
seeded at 2 s. Jobs are enqueued at once, round robin across the keys (the order that
suits the baseline best). Scenarios:

- ``ours``: configured limit 10 = the cap, 200 jobs per key;
- ``baseline``: the same jobs on ``celery -A baseline_app worker``: per-key limit off
  (``RELAYDANCE_MAX_CONCURRENCY=1000``) and Celery's ``rate_limit`` of 7.5/s on
  ``relaydance.submit`` in each worker (15/s in all, the physical limit); measured over a
  bounded window;
- ``ours-limit15``: configured limit 15 against the cap of 10 (429s while the fleet learns);
- ``ours-poll-tuned``: ``ours`` with today's poll settings fitted to this simulator;
- ``ours-webhooks`` / ``ours-limit15-webhooks``: webhook mode (``worker.web.app`` receiver);
- ``fair-ours`` / ``fair-baseline``: key A's 500 jobs, then key B's 20; B's time from being
  sent to done (target 2 x ceil(20/10) x 2 s = 8 s);
- ``mixed-ours`` / ``mixed-ours-webhooks``: ``ours`` with key C on Kinovi (its alias routed
  to the simulator's Kinovi API, model ``seedance2-fast``), keys A and B on RelayDance:
  one fleet, two providers, the same per-key limits; ``control-webhooks`` is
  ``ours-webhooks`` again, to run beside them on the same (shared) machine.

``--only NAME,...`` reruns some scenarios; the other rows of the results file are kept.

Figures come from the simulator's own records (``/_sim/tasks/{id}``: ``created_at`` is the
accepted submit, ``ready_at`` the remote completion) and the job records:

- throughput fraction = jobs / (last remote completion - first accepted submit) / 15 jobs/s
  (the target's measure); also jobs / (last job done - first enqueue) / 15;
- slot use per key, exact: the integral of the key's tasks in flight at the simulator over
  cap x window, the window being the time some job of the key is not yet submitted (its
  first enqueue to its last accepted submit);
- 429s per key (the simulator's counters), sampled every 50 ms with each key's effective
  limit, which dates every 429 and every change of the learned limit.

Prints Markdown tables and the targets, writes ``bench/results/fleet_limits.json``; each
scenario's worker, beat and receiver logs stay in the temporary directory it prints.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleet_limits_measures import (
    CAP,
    GEN,
    JITTER,
    KEYS,
    KINOVI_MODEL,
    MODEL,
    Sampler,
    fair_figures,
    main_figures,
    physical_rate,
    remote_tasks,
)
from fleet_limits_report import keep_other_rows, report, verdicts
from harness import fleet_env, machine, start_web, stop, use_env, write_results

from simulator.testing import SimulatorProcess
from worker.infra.redis_server import RedisServer, free_port

WORKERS, THREADS = 2, 8
BASELINE_RATE = "7.5/s"  # per worker: two workers x 7.5/s = 15 jobs/s, the physical limit
FLEET_ENV = {
    "RELAYDANCE_API_KEYS": json.dumps(KEYS),
    "RELAYDANCE_REQUESTS_PER_SECOND": "200",
    "RELAYDANCE_POLL_INTERVAL_MIN": "0.25",
    "RELAYDANCE_POLL_INTERVAL_MAX": "1",
}
# Today's settings fitted to this simulator: the first poll at the shortest generation time
# (2 s - 20 %) instead of the learned one, then every 0.1 s instead of a growing interval.
POLL_TUNED = {
    "RELAYDANCE_POLL_FIRST_DELAY": "1.6",
    "RELAYDANCE_POLL_INTERVAL_MIN": "0.1",
    "RELAYDANCE_POLL_INTERVAL_MAX": "0.1",
}
WEBHOOK_SECRET = "fleet-bench-webhook-secret-kGR4a0AB79cUM1hjg7MDcp2AYEhnR6Vw"


def api_keys(kinovi: list[str], kinovi_url: str) -> str:
    """RELAYDANCE_API_KEYS: bare keys for RelayDance, routed objects for the Kinovi aliases."""
    routes: dict[str, Any] = {
        alias: {"key": key, "provider": "kinovi", "base_url": kinovi_url}
        if alias in kinovi else key
        for alias, key in KEYS.items()
    }  # fmt: skip
    return json.dumps(routes)


# Fleet processes -------------------------------------------------------------------------


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip


def start_fleet(env: dict[str, str], *, app: str, out: Path) -> list[subprocess.Popen[bytes]]:
    """Two worker processes (threads pool, distinct hostnames) and one beat."""
    celery = [sys.executable, "-m", "celery"]
    procs = [
        _spawn([*celery, "-A", app, "worker", "--pool", "threads", "--concurrency", str(THREADS),
                "--loglevel", "INFO", "--without-gossip", "--without-mingle",
                "--hostname", f"fleet{i}@%h", "--include", "tasks.webhooks"],
               env, out / f"worker{i}.log")
        for i in range(1, WORKERS + 1)
    ]  # fmt: skip
    beat = [*celery, "-A", "worker", "beat", "--schedule", str(out / "beat-schedule")]
    return [*procs, _spawn(beat, env, out / "beat.log")]


def wait_ready(workers: int, *, timeout: float = 60.0) -> None:
    """Block until ``workers`` workers answer a ping (bounded)."""
    from worker.infra.celery_app import app

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(app.control.ping(timeout=1.0)) >= workers:
            return
    raise RuntimeError(f"fewer than {workers} workers answered within {timeout:.0f} s")


# One scenario -----------------------------------------------------------------------------


def _request(alias: str, i: int, kinovi: list[str]) -> dict[str, Any]:
    model = KINOVI_MODEL if alias in kinovi else MODEL
    return {"model": model, "prompt": f"{alias} clip {i}", "seconds": 5}


def _plan(spec: dict[str, Any]) -> list[tuple[str, int]]:
    if spec["plan"] == "fair":
        first = [("key-a", i) for i in range(spec["first"])]
        return first + [("key-b", i) for i in range(spec["then"])]
    return [(alias, i) for i in range(spec["per_key"]) for alias in KEYS]


def _wait(store: Any, ids: list[str], *, timeout: float, few: bool) -> bool:
    """Wait (bounded) until every job in ``ids`` is final; True if they all are."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if few:
            if all((job := store.get(j)) is not None and job.is_final for j in ids):
                return True
        else:  # one read of the state counts instead of hundreds of records
            counts = store.counts()
            if sum(counts.get(s, 0) for s in ("done", "failed", "canceled")) >= len(ids):
                return True
        time.sleep(0.1)
    return False


def _extra_env(spec: dict[str, Any], port: int) -> dict[str, str]:
    """The scenario's settings on top of :data:`FLEET_ENV` (the keys are set once known)."""
    extra = {**FLEET_ENV, "RELAYDANCE_MAX_CONCURRENCY": str(int(spec["limit"])),
             **spec.get("env", {})}  # fmt: skip
    if spec["design"] == "baseline":
        extra["BENCH_SUBMIT_RATE_LIMIT"] = BASELINE_RATE
    if spec.get("webhooks"):
        extra["RELAYDANCE_WEBHOOK_BASE_URL"] = f"http://127.0.0.1:{port}/hooks"
        extra["RELAYDANCE_WEBHOOK_SECRET"] = WEBHOOK_SECRET
    return extra


def _drive(
    spec: dict[str, Any], engine: Any, sim: Any, *, kinovi: list[str]
) -> tuple[dict[str, Any], Sampler]:
    """On a ready fleet: enqueue the plan, wait for it (bounded), collect the records."""
    from tasks import enqueue_render

    for model in (MODEL, KINOVI_MODEL):  # the fleet's state after one finished job
        engine.timing.record(model, 5, GEN)
    sim.reset()
    sampler = Sampler(sim.root, engine.limits, configured=int(spec["limit"]))
    sampler.start()
    run: dict[str, Any] = {"t0": time.time(), "sent": {}, "ids": [], "kinovi": kinovi}
    for alias, i in _plan(spec):
        sent_at = time.time()
        job_id = enqueue_render(_request(alias, i, kinovi), key=alias)
        run["sent"][job_id] = sent_at
        run["ids"].append((alias, job_id))
    run["enqueue_seconds"] = time.time() - run["t0"]
    fair = spec["plan"] == "fair"
    watched = [j for a, j in run["ids"] if a == "key-b" or not fair]
    run["timed_out"] = not _wait(engine.store, watched, timeout=spec["timeout"], few=fair)
    sampler.finish()
    run["stopped_at"] = time.time()
    run["stats"] = sim.stats()
    run["records"] = {j: engine.store.get(j) for _, j in run["ids"]}
    run["remote"] = remote_tasks(sim.root, run["records"])
    return run, sampler


def run_scenario(spec: dict[str, Any]) -> dict[str, Any]:
    """Start the fleet, enqueue the plan, wait, measure; in this (fresh) interpreter."""
    design, limit, fair = spec["design"], int(spec["limit"]), spec["plan"] == "fair"
    out = Path(tempfile.mkdtemp(prefix=f"bench-fleet-{spec['name']}-"))
    port = free_port()
    extra = _extra_env(spec, port)
    with (
        RedisServer() as rs,
        SimulatorProcess(gen_time_mean=GEN, gen_time_jitter=JITTER, concurrency_cap=CAP,
                         retry_after=1.0, seed=1) as sim,
    ):  # fmt: skip
        kinovi = list(spec.get("kinovi", []))
        extra["RELAYDANCE_API_KEYS"] = api_keys(kinovi, sim.kinovi_url)
        env = fleet_env(rs.url, sim.url, out / "renders", **extra)
        env.pop("RELAYDANCE_API_KEY", None)  # the three aliases only
        use_env(env)
        from worker.job.engine import get_engine

        engine = get_engine()
        procs = [start_web(env, port, out / "web.log")] if spec.get("webhooks") else []
        procs += start_fleet(env, app="baseline_app" if design == "baseline" else "worker", out=out)
        try:
            wait_ready(WORKERS)
            run, sampler = _drive(spec, engine, sim, kinovi=kinovi)
        finally:
            stop(procs)
            shutil.rmtree(out / "renders", ignore_errors=True)  # the clips; the logs stay
    figures = fair_figures(run) if fair else main_figures(run, sampler, limit)
    return {
        "name": spec["name"],
        "design": design,
        "configured_limit": limit,
        "plan": spec["plan"],
        "kinovi_keys": spec.get("kinovi", []),
        "env": spec.get("env", {}),
        "webhooks": bool(spec.get("webhooks")),
        "enqueue_seconds": round(run["enqueue_seconds"], 2),
        "timed_out": run["timed_out"],
        "duplicates": run["stats"]["duplicates"],
        "logs": str(out),
        **figures,
    }


# Driver -----------------------------------------------------------------------------------


def scenario(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one scenario in a fresh interpreter (a Celery app is bound to one broker)."""
    started = time.monotonic()
    proc = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec)], check=True,
                          stdout=subprocess.PIPE, text=True)  # fmt: skip
    row: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    row["wall_s"] = round(time.monotonic() - started, 1)
    print(f"# {spec['name']}: {row['wall_s']} s, logs in {row['logs']}", file=sys.stderr)
    return row


def specs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every scenario of the run, in order."""
    main = {"plan": "mixed", "per_key": args.jobs_per_key,
            "timeout": 60 + 4 * args.jobs_per_key * GEN / CAP}  # fmt: skip
    fair = {"plan": "fair", "first": 500, "then": 20, "timeout": 60.0}
    # The baseline runs far below the physical limit: a bounded window measures it.
    slow = {"timeout": args.baseline_window}
    ours = {"design": "ours", "limit": CAP}
    baseline = {"design": "baseline", "limit": 1000}
    return [
        {"name": "ours", **ours, **main},
        {"name": "baseline", **baseline, **main, **slow},
        {"name": "ours-limit15", **ours, **main, "limit": 15},
        {"name": "ours-poll-tuned", **ours, **main, "env": POLL_TUNED},
        {"name": "ours-webhooks", **ours, **main, "webhooks": True},
        {"name": "ours-limit15-webhooks", **ours, **main, "limit": 15, "webhooks": True},
        {"name": "fair-ours", **ours, **fair},
        {"name": "fair-baseline", **baseline, **fair, **slow},
        {"name": "control-webhooks", **ours, **main, "webhooks": True},
        {"name": "mixed-ours", **ours, **main, "kinovi": ["key-c"]},
        {"name": "mixed-ours-webhooks", **ours, **main, "webhooks": True, "kinovi": ["key-c"]},
    ]


def main() -> None:
    """Run every scenario (or one, with --one) and report."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs-per-key", type=int, default=200)
    parser.add_argument("--only", help="comma-separated scenario names")
    parser.add_argument("--baseline-window", type=float, default=60.0,
                        help="seconds the baseline runs before it is measured")  # fmt: skip
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_scenario(json.loads(args.one))))
        return
    started = time.monotonic()
    chosen = [s for s in specs(args) if not args.only or s["name"] in args.only.split(",")]
    rows = [scenario(spec) for spec in chosen]
    for row in rows:
        row["command"] = " ".join([".venv/bin/python", "bench/bench_fleet_limits.py",
                                   *sys.argv[1:]])  # fmt: skip
    rows = keep_other_rows(rows)
    report(rows)
    # A row run with --only carries its own command; the file's is the full run's.
    full = " ".join([".venv/bin/python", "bench/bench_fleet_limits.py", *sys.argv[1:]])
    path = write_results("fleet_limits", {
        "command": ".venv/bin/python bench/bench_fleet_limits.py" if args.only else full,
        "machine": machine(),
        "simulator": {"concurrency_cap": CAP, "gen_time_mean": GEN, "gen_time_jitter": JITTER,
                      "retry_after": 1.0, "keys": len(KEYS)},
        "fleet": {"workers": WORKERS, "pool": "threads", "concurrency": THREADS,
                  "env": {**FLEET_ENV, "RELAYDANCE_API_KEYS": "(3 aliases)"},
                  "baseline_rate_limit_per_worker": BASELINE_RATE},
        "physical_limit_jobs_per_s": physical_rate(len(KEYS)),
        "targets": verdicts(rows),
        "wall_seconds": round(time.monotonic() - started, 1),
        "rows": rows,
    })  # fmt: skip
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
