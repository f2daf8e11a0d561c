"""An unattended night at the real timer order: the faults from outside, and what they cost.

``.venv/bin/python bench/bench_night.py [--jobs 200] [--cap 5] [--scale 0.1]``

Two keys (a RelayDance one and a Kinovi one, cap C each) render a night's batch while the
simulator, at the same time scale as every fleet timer, brings in turn:

1. the account's credit running out (RelayDance's 403 "insufficient balance", Kinovi's 402)
   for ``--window`` real seconds, then a top-up;
2. the RelayDance key revoked (401) for a window, then restored;
3. a provider outage (every route 503 in the provider's own JSON) for a window.

Reported, in real seconds (scaled back): the requests the fleet sent during the outage
window, the refusals each pause drew, the time from each fault's end to the first new
submission on the keys it stopped, and throughput over the night as a fraction of the
physical limit K x C / T with the fault windows taken out. Also: jobs done, failed, unknown,
paid twice (targets: all, 0, 0, 0). Figures go to ``bench/results/night.json``;
docs/benchmarks.md quotes them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_chaos import scaled_env
from harness import machine, print_table, run_child, start_worker, stop, use_env, write_results

GEN_REAL = 90.0
PROBE_REAL = 300.0  # RELAYDANCE_PAUSE_PROBE_SECONDS, the default
STUDIO_KEY, KINOVI_KEY = "sk-bench-night-studio", "kin-bench-night"


def run_one(*, jobs: int, cap: int, scale: float, window: float, gap: float) -> dict[str, Any]:
    from simulator.testing import SimulatorProcess
    from worker.infra.redis_server import RedisServer

    work = Path(tempfile.mkdtemp(prefix="bench-night-"))
    server = RedisServer(appendonly=True).start()
    sim = SimulatorProcess(gen_time_mean=GEN_REAL, gen_time_jitter=0.2, time_scale=scale,
                           seed=3, concurrency_cap=cap, retry_after=30.0, webhooks=False).start()  # fmt: skip
    env = scaled_env(server.url, sim.url, work / "renders", cap=cap, web_port=None, scale=scale)
    keys = {"studio": STUDIO_KEY,
            "kin": {"key": KINOVI_KEY, "provider": "kinovi", "base_url": sim.kinovi_url}}  # fmt: skip
    env.pop("RELAYDANCE_API_KEY")
    env.update({"RELAYDANCE_API_KEYS": json.dumps(keys),
                "RELAYDANCE_PAUSE_PROBE_SECONDS": repr(PROBE_REAL * scale)})  # fmt: skip
    use_env(env)
    from tasks import enqueue_render
    from worker.job.engine import get_engine

    procs = start_worker(env, pool="threads", concurrency=8, log=work / "w0.log", beat=True)
    procs += start_worker(env, pool="threads", concurrency=8, log=work / "w1.log")
    try:
        started = time.time()
        ids = [
            enqueue_render({"model": "doubao-seedance-2-0-fast-260128" if n % 2 else "seedance2-fast",
                            "prompt": f"night {n}", "seconds": 5},
                           key="studio" if n % 2 else "kin")
            for n in range(jobs)
        ]  # fmt: skip
        faults = _night(sim, scale=scale, window=window, gap=gap)
        store = get_engine().store
        _wait_final(store, ids, timeout=1800)
        records = store.get_many(ids)
        created = {i: [t["created_at"] for t in sim.tasks_for(i)] for i in ids}
        stats = sim.stats()
    finally:
        stop(procs)
        sim.stop()
        server.stop()
    return _report(records, created, stats, faults, jobs=jobs, cap=cap, scale=scale,
                   started=started, window=window)  # fmt: skip


def _night(sim: Any, *, scale: float, window: float, gap: float) -> list[dict[str, Any]]:
    """The night's faults one after the other, each for ``window``: what the fleet sent."""
    faults: list[dict[str, Any]] = []
    plan = [("credit", {"credit_clips": 0}, {"credit_clips": None}, ("studio", "kin")),
            ("revoked", {"revoked_keys": [_fp(STUDIO_KEY)]}, {"revoked_keys": []},
             ("studio",)),
            ("outage", {"outage": True}, {"outage": False}, ("studio", "kin"))]  # fmt: skip
    for name, on, off, aliases in plan:
        time.sleep(gap * scale)
        before = sim.stats()
        begin = time.time()
        sim.configure(**on)
        time.sleep(window * scale)
        after = sim.stats()
        sim.configure(**off)
        faults.append({"fault": name, "begin": begin, "end": time.time(), "aliases": aliases,
                       "during": _delta(before, after)})  # fmt: skip
    return faults


def _wait_final(store: Any, ids: list[str], *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = store.get_many(ids)
        if all(j is not None and j.is_final for j in found):
            break
        time.sleep(0.5)


def _fp(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def _delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    names = ("outage_requests", "refused_credits", "unauthorized", "submissions", "polls")
    return {n: int(after.get(n, 0)) - int(before.get(n, 0)) for n in names}


def _report(records: list[Any], created: dict[str, list[float]], stats: dict[str, Any],
            faults: list[dict[str, Any]], *, jobs: int, cap: int, scale: float, started: float,
            window: float) -> dict[str, Any]:  # fmt: skip
    by_alias: dict[str, list[float]] = {}
    for job in records:
        if job is not None:
            by_alias.setdefault(job.alias, []).extend(created.get(job.id, []))
    row: dict[str, Any] = {"jobs": jobs, "cap": cap, "scale": scale, "window_real_s": window}
    for fault in faults:
        after = [t for a in fault["aliases"] for t in by_alias.get(a, []) if t >= fault["end"]]
        resumed = (min(after) - fault["end"]) / scale if after else None
        name = fault["fault"]
        row[f"{name}_resume_real_s"] = None if resumed is None else round(resumed, 1)
        row[f"{name}_refusals"] = (fault["during"]["refused_credits"] if name == "credit" else
                                   fault["during"]["unauthorized"] if name == "revoked" else
                                   fault["during"]["outage_requests"])  # fmt: skip
    row["outage_requests"] = next(f["during"]["outage_requests"] for f in faults
                                  if f["fault"] == "outage")  # fmt: skip
    states: dict[str, int] = {}
    for job in records:
        state = job.state.value if job else "missing"
        states[state] = states.get(state, 0) + 1
    done = [j for j in records if j is not None and j.state.value == "done"]
    end = max((j.times.get("generated", 0.0) for j in done), default=started)
    blocked = sum(f["end"] - f["begin"] for f in faults)
    night = max(end - started - blocked, 1e-9)
    limit = 2 * cap / (GEN_REAL * scale)
    row.update({
        "done": states.get("done", 0), "failed": states.get("failed", 0),
        "unknown": states.get("submit_unknown", 0), "paid_twice": stats["paid_twice"],
        "billed": stats["billed_tasks"], "throughput_fraction": round(len(done) / night / limit, 3),
        "night_real_s": round((end - started) / scale), "states": states,
    })  # fmt: skip
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--cap", type=int, default=5)
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--window", type=float, default=60.0, help="each fault, real s")
    parser.add_argument("--gap", type=float, default=400.0, help="between faults, real s")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(**json.loads(args.one))))
        return
    row = run_child(__file__, {"jobs": args.jobs, "cap": args.cap, "scale": args.scale,
                               "window": args.window, "gap": args.gap})  # fmt: skip
    print(json.dumps(row), flush=True)
    cols = ["jobs", "done", "failed", "unknown", "paid_twice", "outage_requests",
            "credit_refusals", "revoked_refusals", "credit_resume_real_s",
            "revoked_resume_real_s", "outage_resume_real_s", "throughput_fraction"]  # fmt: skip
    print_table([row], cols)
    write_results("night", {"machine": machine(), "generation_real_s": GEN_REAL,
                            "probe_real_s": PROBE_REAL, "rows": [row]})  # fmt: skip


if __name__ == "__main__":
    main()
