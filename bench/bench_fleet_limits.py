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
import hashlib
import json
import math
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import fleet_env, machine, percentile, start_web, stop, use_env, write_results

from simulator.testing import SimulatorProcess
from worker.infra.redis_server import RedisServer, free_port

MODEL = "doubao-seedance-2-0-fast-260128"
KINOVI_MODEL = "seedance2-fast"
GEN, JITTER, CAP = 2.0, 0.2, 10
KEYS = {"key-a": "sk-fleet-bench-a", "key-b": "sk-fleet-bench-b", "key-c": "sk-fleet-bench-c"}
WORKERS, THREADS = 2, 8
BASELINE_RATE = "7.5/s"  # per worker: two workers x 7.5/s = 15 jobs/s, the physical limit
SAMPLE_EVERY = 0.05
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
TARGETS = {"throughput": 0.95, "slot_use": 0.95, "limit15_429s": 5, "limit15_throughput": 0.9}


def api_keys(kinovi: list[str], kinovi_url: str) -> str:
    """RELAYDANCE_API_KEYS: bare keys for RelayDance, routed objects for the Kinovi aliases."""
    routes: dict[str, Any] = {
        alias: {"key": key, "provider": "kinovi", "base_url": kinovi_url}
        if alias in kinovi else key
        for alias, key in KEYS.items()
    }  # fmt: skip
    return json.dumps(routes)


def fingerprint(key: str) -> str:
    """How the simulator's stats name a key: the first 8 hex digits of its sha256."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def physical_rate(keys: int) -> float:
    """Jobs per second the provider allows: keys x cap / generation time."""
    return keys * CAP / GEN


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


class Sampler(threading.Thread):
    """Every 50 ms: the simulator's 429 counters and each key's effective limit."""

    def __init__(self, sim_root: str, limits: Any, *, configured: int) -> None:
        super().__init__(daemon=True)
        self._http = httpx.Client(base_url=sim_root, timeout=5.0)
        self._limits = limits
        self._configured = configured
        self._halt = threading.Event()
        self.samples: list[tuple[float, dict[str, int], dict[str, int]]] = []

    def run(self) -> None:
        while not self._halt.is_set():
            t = time.time()
            keys = self._http.get("/_sim/stats").json()["keys"]
            limited = {fp: v["rate_limited"] for fp, v in keys.items()}
            effective = {a: self._limits.effective_limit(a, limit=self._configured) for a in KEYS}
            self.samples.append((t, limited, effective))
            self._halt.wait(max(0.0, SAMPLE_EVERY - (time.time() - t)))

    def finish(self) -> None:
        """Stop sampling and close the client."""
        self._halt.set()
        self.join(timeout=5)
        self._http.close()

    def rejections(self, alias: str, t0: float) -> list[tuple[float, int]]:
        """(seconds since t0, new 429s) at each sample where the key's 429 count rose."""
        fp, out, before = fingerprint(KEYS[alias]), [], 0
        for t, limited, _ in self.samples:
            if limited.get(fp, 0) > before:
                out.append((round(t - t0, 2), limited[fp] - before))
            before = limited.get(fp, 0)
        return out

    def limit_changes(self, alias: str, t0: float) -> list[tuple[float, int]]:
        """(seconds since t0, effective limit) each time the key's effective limit changed."""
        out: list[tuple[float, int]] = []
        for t, _, effective in self.samples:
            if not out or out[-1][1] != effective[alias]:
                out.append((round(t - t0, 2), effective[alias]))
        return out


# Measures ---------------------------------------------------------------------------------


def slot_use(intervals: list[tuple[float, float]], start: float, end: float, cap: int) -> float:
    """Time-weighted share of ``cap`` slots in use over [start, end] (exact, from intervals)."""
    if end <= start:
        return float("nan")
    events: list[tuple[float, int]] = []
    for begin, finish in intervals:
        lo, hi = max(begin, start), min(finish, end)
        if hi > lo:
            events += [(lo, 1), (hi, -1)]
    busy, level, last = 0.0, 0, start
    for t, step in sorted(events):
        busy += min(level, cap) * (t - last)
        level, last = level + step, t
    return (busy + min(level, cap) * (end - last)) / (cap * (end - start))


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None or math.isnan(value) else round(value, digits)


def _main_figures(run: dict[str, Any], sampler: Sampler, limit: int) -> dict[str, Any]:
    ids, records, remote, stats = run["ids"], run["records"], run["remote"], run["stats"]
    t0, stopped = run["t0"], run["stopped_at"]
    jobs = [j for _, j in ids]
    states: dict[str, int] = {}
    for j in jobs:
        state = records[j].state.value if records[j] is not None else "missing"
        states[state] = states.get(state, 0) + 1
    done = [j for j in jobs if records[j] is not None and records[j].state.value == "done"]
    tasks = [remote[j] for j in jobs if j in remote]
    ready = [t["ready_at"] for t in tasks if t["ready_at"] <= stopped]
    span = max(ready) - min(t["created_at"] for t in tasks) if ready else None
    last_done = max((records[j].times["done"] for j in done), default=None)
    rate = physical_rate(len(KEYS))
    per_key: dict[str, dict[str, Any]] = {}
    for alias in KEYS:
        mine = [j for a, j in ids if a == alias]
        spans = [(remote[j]["created_at"], remote[j]["ready_at"]) for j in mine if j in remote]
        start = min(records[j].created_at for j in mine if records[j] is not None)
        end = max((b for b, _ in spans), default=start)
        hits = sampler.rejections(alias, t0)
        mine_ready = [b for _, b in spans if b <= stopped]
        key_span = max(mine_ready) - min(a for a, _ in spans) if mine_ready else None
        per_key[alias] = {
            "provider": "kinovi" if alias in run["kinovi"] else "relaydance",
            # The key's jobs over its own span, against one key's limit C / T.
            "throughput_fraction": _r(len(mine_ready) / key_span / (CAP / GEN))
            if key_span
            else None,
            "rate_limited": stats["keys"].get(fingerprint(KEYS[alias]), {}).get("rate_limited", 0),
            "rate_limited_at_s": hits,
            "last_429_s": hits[-1][0] if hits else None,
            "slot_use_while_waiting": _r(slot_use(spans, start, end, CAP)),
            "waiting_window_s": round(end - start, 2),
            "peak_in_flight": stats["peak_in_flight_by_key"].get(fingerprint(KEYS[alias]), 0),
            "effective_limit_changes": sampler.limit_changes(alias, t0),
        }
    seen = [records[j].times["generated"] - remote[j]["ready_at"] for j in done if j in remote]
    return {
        "jobs": len(jobs),
        "done": len(done),
        "states": states,
        "submissions": stats["submissions"],
        "rate_limited": stats["rate_limited"],
        "submit_attempts_per_s": round(
            (stats["submissions"] + stats["rate_limited"]) / (stopped - t0), 2
        ),
        "seconds_submit_to_last_remote": _r(span, 2),
        "seconds_enqueue_to_last_done": _r(last_done - t0 if last_done else None, 2),
        "throughput_fraction_remote": _r(len(ready) / span / rate if span else None),
        "throughput_fraction_done": _r(len(done) / (last_done - t0) / rate if last_done else None),
        "ready_to_seen_p50_s": _r(percentile(seen, 50)),
        "ready_to_seen_p95_s": _r(percentile(seen, 95)),
        "polls_per_job": round(sum(records[j].poll_count for j in done) / max(len(done), 1), 2),
        "mean_generation_s": _r(
            sum(t["ready_at"] - t["created_at"] for t in tasks) / max(len(tasks), 1)
        ),
        "keys": per_key,
    }


def _fair_figures(run: dict[str, Any]) -> dict[str, Any]:
    ids, records, remote, sent = run["ids"], run["records"], run["remote"], run["sent"]
    b_jobs = [j for a, j in ids if a == "key-b"]
    first = min(sent[j] for j in b_jobs)
    done = [records[j].times["done"] for j in b_jobs if records[j] and "done" in records[j].times]
    accepted = [remote[j] for j in b_jobs if j in remote]
    every_b = len(done) == len(b_jobs)
    return {
        "jobs": len(ids),
        "b_jobs": len(b_jobs),
        "b_done": len(done),
        "b_sent_to_all_done_s": _r(max(done) - first if every_b else None, 2),
        "b_sent_to_last_remote_ready_s": _r(
            max(t["ready_at"] for t in accepted) - first if len(accepted) == len(b_jobs) else None,
            2,
        ),
        "b_sent_to_first_accepted_s": _r(
            min(t["created_at"] for t in accepted) - first if accepted else None, 2
        ),
        "rate_limited_by_key": {
            alias: run["stats"]["keys"].get(fingerprint(key), {}).get("rate_limited", 0)
            for alias, key in KEYS.items()
        },
    }


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


def _remote_tasks(root: str, records: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The simulator's internals of every job's accepted task, by job id."""
    found: dict[str, dict[str, Any]] = {}
    with httpx.Client(base_url=root, timeout=10.0) as http:
        for job_id, job in records.items():
            if job is not None and job.remote_task_id:
                response = http.get(f"/_sim/tasks/{job.remote_task_id}")
                if response.status_code == 200:
                    found[job_id] = response.json()
    return found


def run_scenario(spec: dict[str, Any]) -> dict[str, Any]:
    """Start the fleet, enqueue the plan, wait, measure; in this (fresh) interpreter."""
    design, limit, fair = spec["design"], int(spec["limit"]), spec["plan"] == "fair"
    out = Path(tempfile.mkdtemp(prefix=f"bench-fleet-{spec['name']}-"))
    extra = {**FLEET_ENV, "RELAYDANCE_MAX_CONCURRENCY": str(limit), **spec.get("env", {})}
    if design == "baseline":
        extra["BENCH_SUBMIT_RATE_LIMIT"] = BASELINE_RATE
    port = free_port()
    if spec.get("webhooks"):
        extra["RELAYDANCE_WEBHOOK_BASE_URL"] = f"http://127.0.0.1:{port}/hooks"
        extra["RELAYDANCE_WEBHOOK_SECRET"] = WEBHOOK_SECRET
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
        from tasks import enqueue_render
        from worker.job.engine import get_engine

        engine = get_engine()
        procs = [start_web(env, port, out / "web.log")] if spec.get("webhooks") else []
        procs += start_fleet(env, app="baseline_app" if design == "baseline" else "worker", out=out)
        try:
            wait_ready(WORKERS)
            for model in (MODEL, KINOVI_MODEL):  # the fleet's state after one finished job
                engine.timing.record(model, 5, GEN)
            sim.reset()
            sampler = Sampler(sim.root, engine.limits, configured=limit)
            sampler.start()
            run: dict[str, Any] = {"t0": time.time(), "sent": {}, "ids": [], "kinovi": kinovi}
            for alias, i in _plan(spec):
                sent_at = time.time()
                job_id = enqueue_render(_request(alias, i, kinovi), key=alias)
                run["sent"][job_id] = sent_at
                run["ids"].append((alias, job_id))
            enqueue_seconds = time.time() - run["t0"]
            watched = [j for a, j in run["ids"] if a == "key-b" or not fair]
            timed_out = not _wait(engine.store, watched, timeout=spec["timeout"], few=fair)
            sampler.finish()
            run["stopped_at"] = time.time()
            run["stats"] = sim.stats()
            run["records"] = {j: engine.store.get(j) for _, j in run["ids"]}
            run["remote"] = _remote_tasks(sim.root, run["records"])
        finally:
            stop(procs)
            shutil.rmtree(out / "renders", ignore_errors=True)  # the clips; the logs stay
    figures = _fair_figures(run) if fair else _main_figures(run, sampler, limit)
    return {
        "name": spec["name"],
        "design": design,
        "configured_limit": limit,
        "plan": spec["plan"],
        "kinovi_keys": spec.get("kinovi", []),
        "env": spec.get("env", {}),
        "webhooks": bool(spec.get("webhooks")),
        "enqueue_seconds": round(enqueue_seconds, 2),
        "timed_out": timed_out,
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


def verdicts(rows: list[dict[str, Any]]) -> list[str]:
    """One line per target and row of ours: the figure and whether it meets the target."""
    lines = []
    for r in rows:
        if r["design"] != "ours":
            continue
        if r["plan"] == "fair":
            met = r["b_sent_to_all_done_s"] is not None and r["b_sent_to_all_done_s"] <= 8.0
            lines.append(f"{r['name']}: B sent -> all done {r['b_sent_to_all_done_s']} s "
                         f"(<= 8 s): {'met' if met else 'MISSED'}")  # fmt: skip
            continue
        keys, fraction = r["keys"].values(), r["throughput_fraction_remote"] or 0.0
        if r.get("kinovi_keys"):
            for alias, k in r["keys"].items():
                per_key = k.get("throughput_fraction") or 0.0
                lines.append(f"{r['name']}: {alias} ({k['provider']}) 429s {k['rate_limited']} "
                             f"(== 0): {'met' if k['rate_limited'] == 0 else 'MISSED'}")  # fmt: skip
                if r["webhooks"]:
                    met = per_key >= TARGETS["throughput"]
                    lines.append(f"{r['name']}: {alias} throughput {per_key} of C/T (>= 0.95): "
                                 f"{'met' if met else 'MISSED'}")  # fmt: skip
            if r["webhooks"]:
                met = fraction >= TARGETS["throughput"]
                lines.append(f"{r['name']}: throughput {fraction} of K x C / T (>= 0.95): "
                             f"{'met' if met else 'MISSED'}")  # fmt: skip
            continue
        if r["configured_limit"] == CAP:
            checks = [
                ("429s", max(k["rate_limited"] for k in keys), "== 0", r["rate_limited"] == 0),
                ("throughput", fraction, ">= 0.95", fraction >= TARGETS["throughput"]),
                ("slot use (worst key)", min(k["slot_use_while_waiting"] for k in keys),
                 ">= 0.95", all(k["slot_use_while_waiting"] >= TARGETS["slot_use"]
                                for k in keys)),
            ]  # fmt: skip
        else:
            worst = max(k["rate_limited"] for k in keys)
            checks = [
                ("429s (worst key)", worst, "<= 5", worst <= TARGETS["limit15_429s"]),
                ("throughput", fraction, ">= 0.9", fraction >= TARGETS["limit15_throughput"]),
            ]
        for label, value, target, met in checks:
            lines.append(f"{r['name']}: {label} {value} ({target}): {'met' if met else 'MISSED'}")
    return lines


def _table(cols: list[str], rows: list[list[Any]]) -> None:
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for cells in rows:
        print("| " + " | ".join(str(c) for c in cells) + " |")


def report(rows: list[dict[str, Any]]) -> None:
    """Print the Markdown tables and the targets."""

    def by_key(r: dict[str, Any], field: str) -> str:
        return " / ".join(str(r["keys"][a][field]) for a in KEYS)

    _table(
        ["scenario", "limit", "done", "429s A / B / C", "last 429 at s",
         "throughput (submit -> last remote done)", "throughput (enqueue -> last done)",
         "slot use while waiting A / B / C", "ready -> seen p50 / p95 s", "polls/job",
         "submits + 429s /s", "submit -> last remote done s"],
        [[r["name"], r["configured_limit"], f"{r['done']}/{r['jobs']}",
          by_key(r, "rate_limited"), by_key(r, "last_429_s"), r["throughput_fraction_remote"],
          r["throughput_fraction_done"], by_key(r, "slot_use_while_waiting"),
          f"{r['ready_to_seen_p50_s']} / {r['ready_to_seen_p95_s']}", r["polls_per_job"],
          r["submit_attempts_per_s"], r["seconds_submit_to_last_remote"]]
         for r in rows if r["plan"] == "mixed" and not r.get("kinovi_keys")],
    )  # fmt: skip
    print()
    mixed = [r for r in rows if r.get("kinovi_keys")]
    if mixed:
        _table(
            ["scenario", "done", "key", "provider", "429s", "throughput of C / T",
             "slot use while waiting", "throughput of K x C / T (all keys)"],
            [[r["name"], f"{r['done']}/{r['jobs']}", alias, k["provider"], k["rate_limited"],
              k["throughput_fraction"], k["slot_use_while_waiting"],
              r["throughput_fraction_remote"]]
             for r in mixed for alias, k in r["keys"].items()],
        )  # fmt: skip
        print()
    _table(
        ["scenario", "B done", "B sent -> all B done s", "B sent -> last B remote done s",
         "B sent -> first B accepted s", "429s A / B", "target s"],
        [[r["name"], f"{r['b_done']}/{r['b_jobs']}", r["b_sent_to_all_done_s"],
          r["b_sent_to_last_remote_ready_s"], r["b_sent_to_first_accepted_s"],
          f"{r['rate_limited_by_key']['key-a']} / {r['rate_limited_by_key']['key-b']}",
          2 * math.ceil(r["b_jobs"] / CAP) * GEN]
         for r in rows if r["plan"] == "fair"],
    )  # fmt: skip
    print("\nTargets:\n" + "\n".join(f"- {line}" for line in verdicts(rows)))


def _keep_other_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows just run, plus the earlier results' rows of scenarios not rerun (in order)."""
    path = Path(__file__).resolve().parent / "results" / "fleet_limits.json"
    if not path.exists():
        return rows
    fresh = {row["name"]: row for row in rows}
    earlier = json.loads(path.read_text()).get("rows", [])
    kept = [fresh.pop(row["name"], row) for row in earlier]
    return kept + list(fresh.values())


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
    rows = _keep_other_rows(rows)
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
