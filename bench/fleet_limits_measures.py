"""What ``bench_fleet_limits.py`` measures, and the simulator it measures against.

The :class:`Sampler` dates every 429 and every change of a key's learned limit; the
figures come from the simulator's records of each task and from the job records.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from typing import Any

import httpx
from harness import percentile

MODEL = "doubao-seedance-2-0-fast-260128"
KINOVI_MODEL = "seedance2-fast"
GEN, JITTER, CAP = 2.0, 0.2, 10
KEYS = {"key-a": "sk-fleet-bench-a", "key-b": "sk-fleet-bench-b", "key-c": "sk-fleet-bench-c"}
SAMPLE_EVERY = 0.05


def fingerprint(key: str) -> str:
    """How the simulator's stats name a key: the first 8 hex digits of its sha256."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def physical_rate(keys: int) -> float:
    """Jobs per second the provider allows: keys x cap / generation time."""
    return keys * CAP / GEN


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


def main_figures(run: dict[str, Any], sampler: Sampler, limit: int) -> dict[str, Any]:
    """The figures of a ``mixed`` plan: throughput, 429s, slot use and their timings."""
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
    per_key = {alias: _key_figures(run, sampler, alias) for alias in KEYS}
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


def _key_figures(run: dict[str, Any], sampler: Sampler, alias: str) -> dict[str, Any]:
    """One key's figures: its throughput, 429s, slot use and effective limits."""
    ids, records, remote, stats = run["ids"], run["records"], run["remote"], run["stats"]
    t0, stopped = run["t0"], run["stopped_at"]
    mine = [j for a, j in ids if a == alias]
    spans = [(remote[j]["created_at"], remote[j]["ready_at"]) for j in mine if j in remote]
    start = min(records[j].created_at for j in mine if records[j] is not None)
    end = max((b for b, _ in spans), default=start)
    hits = sampler.rejections(alias, t0)
    mine_ready = [b for _, b in spans if b <= stopped]
    key_span = max(mine_ready) - min(a for a, _ in spans) if mine_ready else None
    return {
        "provider": "kinovi" if alias in run["kinovi"] else "relaydance",
        # The key's jobs over its own span, against one key's limit C / T.
        "throughput_fraction": _r(len(mine_ready) / key_span / (CAP / GEN)) if key_span else None,
        "rate_limited": stats["keys"].get(fingerprint(KEYS[alias]), {}).get("rate_limited", 0),
        "rate_limited_at_s": hits,
        "last_429_s": hits[-1][0] if hits else None,
        "slot_use_while_waiting": _r(slot_use(spans, start, end, CAP)),
        "waiting_window_s": round(end - start, 2),
        "peak_in_flight": stats["peak_in_flight_by_key"].get(fingerprint(KEYS[alias]), 0),
        "effective_limit_changes": sampler.limit_changes(alias, t0),
    }


def fair_figures(run: dict[str, Any]) -> dict[str, Any]:
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


def remote_tasks(root: str, records: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The simulator's internals of every job's accepted task, by job id."""
    found: dict[str, dict[str, Any]] = {}
    with httpx.Client(base_url=root, timeout=10.0) as http:
        for job_id, job in records.items():
            if job is not None and job.remote_task_id:
                response = http.get(f"/_sim/tasks/{job.remote_task_id}")
                if response.status_code == 200:
                    found[job_id] = response.json()
    return found
