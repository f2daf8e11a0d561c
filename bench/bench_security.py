"""What the network checks cost on the hot path: the webhook handler, before and after.

    .venv/bin/python bench/bench_security.py [--base 14e040a] [--rounds 5] [--calls 1000]

The webhook handler (:func:`worker.web.receiver.handle_webhook`, the code every web adapter
calls) is timed in this tree and in the tree at ``--base`` (checked out with ``git
worktree add`` in a temporary directory, removed afterwards), each in a fresh
interpreter against its own redis-server, rounds interleaved so both see the same
machine. Scenarios, ``--calls`` deliveries per round, each timed on its own:

- ``accepted``: a valid delivery for a running job (a task is queued; the broker send is
  a no-op here, the same in both trees), one job per delivery;
- ``ignored``: a replayed delivery for a finished job (answered 200, nothing queued).

The after tree also reports the download connect path: :class:`AddressGuard` picking the
pinned, checked address before the (faked) OS connect, against the bare backend.

Prints a Markdown table (medians per call, and after/before ratios; target: under 1.05)
and writes bench/results/security.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGET = 1.05
SECRET = "bench-security-secret-uW51ToQUPoBlqqvspUMKkQRJc0foVstj"


def _measure(calls: int) -> dict[str, float]:
    """Run in a child whose sys.path starts at the tree under test: µs per call, medians."""
    from config.settings import load_settings
    from worker.infra.redis_server import RedisServer
    from worker.job.callback import token_for
    from worker.job.engine import Engine
    from worker.job.record import JobState
    from worker.render.validation import validate_request
    from worker.web.receiver import handle_webhook

    class QuietEngine(Engine):
        def send(self, name: str, *args: Any, countdown: float | None = None) -> None:
            pass

    with RedisServer() as server:
        settings = load_settings(
            redis_url=server.url, api_key="sk-bench-security", base_url="https://p.test/v1",
            webhook_base_url="https://app.example/hooks", webhook_secret=SECRET,
        )  # fmt: skip
        base = Engine.from_settings(settings)
        engine = QuietEngine.__new__(QuietEngine)
        engine.__dict__.update(base.__dict__)
        engine.bind_limits()
        request = validate_request({"model": "doubao-seedance-2-0-fast-260128", "prompt": "b"})
        out: dict[str, float] = {}
        for scenario, state in (("accepted", JobState.RUNNING), ("ignored", JobState.DONE)):
            jobs = []
            for _ in range(calls if scenario == "accepted" else 1):
                job_id = engine.store.create_render(request, alias="default")
                engine.store.change(
                    job_id, states=None, to=state, set={"remote_task_id": f"t_{job_id}"}
                )
                jobs.append((job_id, token_for(SECRET, job_id)))
            times = []
            for i in range(calls):
                job_id, token = jobs[i % len(jobs)]
                body = json.dumps({"task_id": f"t_{job_id}", "status": "succeeded"}).encode()
                started = time.perf_counter()
                status, _ = handle_webhook(job_id, token, body, "application/json", engine=engine)
                times.append(time.perf_counter() - started)
                assert status in (200, 202), status
            out[scenario] = statistics.median(times) * 1e6
        engine.close()
    out.update(_connect_path(calls))
    return out


def _connect_path(calls: int) -> dict[str, float]:
    try:
        from worker.provider.urlsafety import AddressGuard, check_url, connect_only_to
    except ImportError:  # the tree before the guard
        return {}
    import httpcore

    class Fake(httpcore.NetworkBackend):
        def connect_tcp(self, host: str, port: int, *args: Any, **kw: Any) -> Any:
            return host

    url = "https://93.184.216.34/clip.mp4"
    addrs = check_url(url, allow_local=False)
    fake, guard = Fake(), AddressGuard(Fake())
    out = {}
    for name, backend in (("connect_bare", fake), ("connect_guarded", guard)):
        times = []
        for _ in range(calls):
            started = time.perf_counter()
            with connect_only_to(url, addrs, allow_local=False):
                backend.connect_tcp("93.184.216.34", 443)
            times.append(time.perf_counter() - started)
        out[name] = statistics.median(times) * 1e6
    return out


def _child(tree: Path, calls: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    code = (
        f"import sys; sys.path.insert(0, {str(tree)!r}); "
        f"sys.path.insert(1, {str(ROOT / 'bench')!r}); "
        f"import bench_security, json; print(json.dumps(bench_security._measure({calls})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tree, capture_output=True, text=True, check=True
    )
    figures: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="14e040a")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()
    before: list[dict[str, float]] = []
    after: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="rd-bench-base-") as tmp:
        base = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base),
                        args.base], check=True, capture_output=True)  # fmt: skip
        try:
            for _ in range(args.rounds):
                before.append(_child(base, args.calls))
                after.append(_child(ROOT, args.calls))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)],
                           check=True, capture_output=True)  # fmt: skip
    report(args, before, after)


def report(
    args: argparse.Namespace, before: list[dict[str, float]], after: list[dict[str, float]]
) -> None:
    rows: dict[str, Any] = {}
    print(f"| path | before (µs, {args.base}) | after (µs) | after / before |")
    print("|---|---:|---:|---:|")
    for name in ("accepted", "ignored"):
        b = statistics.median(r[name] for r in before)
        a = statistics.median(r[name] for r in after)
        rows[name] = {"before_us": round(b, 1), "after_us": round(a, 1), "ratio": round(a / b, 3)}
        print(f"| webhook {name} | {b:.1f} | {a:.1f} | {a / b:.3f} |")
    bare = statistics.median(r["connect_bare"] for r in after)
    guarded = statistics.median(r["connect_guarded"] for r in after)
    rows["connect"] = {"bare_us": round(bare, 2), "guarded_us": round(guarded, 2)}
    print(f"| download connect (pinned address) | {bare:.2f} | {guarded:.2f} | "
          f"+{guarded - bare:.2f} µs |")  # fmt: skip
    data = {"base": args.base, "rounds": args.rounds, "calls": args.calls, "target": TARGET,
            "rows": rows, "machine": f"{os.cpu_count()} cores, Python {sys.version.split()[0]}"}  # fmt: skip
    path = ROOT / "bench" / "results" / "security.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
