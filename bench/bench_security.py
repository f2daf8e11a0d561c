"""What the security checks cost on the hot paths: the webhook handler and the sign-in path.

    .venv/bin/python bench/bench_security.py [--base 25c9b21] [--rounds 20] [--calls 100]

Everything is timed in this tree and in the tree at ``--base`` (checked out with ``git
worktree add`` in a temporary directory, removed afterwards), each in its own long-lived
interpreter with its own redis-server. The two are driven in turns: each round runs
``--calls`` calls of every scenario in one tree, then in the other (which goes first
alternates), so both see the same moments of a shared, noisy machine. Figures are
medians of every call, each timed on its own.

- ``redis round trip (PING)``: the yardstick. A session or throttle lookup is one round
  trip to Redis, the only thing the sign-in rows may add.
- ``webhook accepted`` / ``ignored``: :func:`worker.web.receiver.handle_webhook`, the code
  every web adapter calls: a delivery for a running job (a task queued; the broker send is
  a no-op, the same in both trees), and a replay for a finished job.
- The sign-in path through :class:`worker.web.jobs_page.JobsPage` (what every adapter
  calls), in-process: ``sign-in form`` (the right token posted: a session opened),
  ``sign-in refused`` (a wrong token), ``bearer asset`` (the smallest authenticated answer,
  a stylesheet: the authentication step and little else), ``bearer jobs`` and ``cookie
  jobs`` (the jobs list, 20 jobs, with a Bearer token or a session cookie).
- The same over HTTP, a real uvicorn serving ``create_web_app`` on loopback, one kept-alive
  connection: ``http sign-in`` (the POST alone), ``http sign-in to jobs`` (the POST and the
  jobs list it lands on, as a browser does), ``http cookie jobs``, ``http bearer asset``:
  the latency a browser or script sees.

Prints a Markdown table (after/before ratios, target under 1.10, and the µs added) and
writes bench/results/security.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
TARGET = 1.10
SECRET = "bench-security-secret-0HCW5AJFKKIVn6Hg7Dk2-HsIvYY4xs_R"
TOKEN = "bench-ui-token-Qm3Xv8Lp2Rk7Tz4Wb9Nc6Hd1Fs5Gy0Ja"
ROWS = ("redis round trip (PING)", "webhook accepted", "webhook ignored", "sign-in form",
        "sign-in refused", "bearer asset", "bearer jobs", "cookie jobs", "http sign-in",
        "http sign-in to jobs", "http cookie jobs", "http bearer asset")  # fmt: skip

Call = Callable[[int], Any]


def _times_us(run: Call, calls: int, *, start: int, between: Call | None = None) -> list[float]:
    out = []
    for i in range(start, start + calls):
        if between is not None:
            between(i)  # untimed
        began = time.perf_counter()
        run(i)
        out.append((time.perf_counter() - began) * 1e6)
    return out


def _serve() -> None:
    """In a child whose sys.path starts at the tree under test: set up once, then run the
    scenario each stdin line names, and print its per-call times (µs) as JSON."""
    from config.settings import get_settings, load_settings
    from worker.infra.redis_server import RedisServer
    from worker.job.engine import Engine

    class QuietEngine(Engine):
        def send(self, name: str, *args: Any, countdown: float | None = None) -> None:
            pass

    with RedisServer() as server:
        os.environ.update({"REDIS_URL": server.url, "RELAYDANCE_UI_TOKEN": TOKEN,
                           "RELAYDANCE_METRICS_PORT": "0"})  # fmt: skip
        get_settings.cache_clear()
        settings = load_settings(
            redis_url=server.url, api_key="sk-bench-security", base_url="https://p.test/v1",
            webhook_base_url="https://app.example/hooks", webhook_secret=SECRET,
        )  # fmt: skip
        base = Engine.from_settings(settings)
        engine = QuietEngine.__new__(QuietEngine)
        engine.__dict__.update(base.__dict__)
        engine.bind_limits()
        scenarios: dict[str, tuple[Call, Call | None]] = {
            "redis round trip (PING)": (lambda i: engine.redis.ping(), None),
            **_webhooks(engine), **_page(engine), **_http(engine),
        }  # fmt: skip
        done = {name: 0 for name in scenarios}
        print("ready", flush=True)
        for line in sys.stdin:
            name, calls = json.loads(line)
            run, between = scenarios[name]
            print(json.dumps(_times_us(run, calls, start=done[name], between=between)), flush=True)
            done[name] += calls


def _webhooks(engine: Any) -> dict[str, tuple[Call, Call | None]]:
    from worker.job.callback import token_for
    from worker.job.record import JobState
    from worker.render.validation import validate_request
    from worker.web.receiver import handle_webhook

    request = validate_request({"model": "doubao-seedance-2-0-fast-260128", "prompt": "b"})
    out: dict[str, tuple[Call, Call | None]] = {}
    for scenario, state, count in (
        ("accepted", JobState.RUNNING, 200),
        ("ignored", JobState.DONE, 1),
    ):
        jobs = []
        for _ in range(count):
            job_id = engine.store.create_render(request, alias="default")
            engine.store._change(
                job_id, states=None, to=state, set={"remote_task_id": f"t_{job_id}"}
            )
            jobs.append((job_id, token_for(SECRET, job_id)))

        def deliver(i: int, jobs: list[tuple[str, str]] = jobs) -> None:
            job_id, token = jobs[i % len(jobs)]
            body = json.dumps({"task_id": f"t_{job_id}", "status": "succeeded"}).encode()
            status, _ = handle_webhook(job_id, token, body, "application/json", engine=engine)
            assert status in (200, 202), status

        def reopen(i: int, jobs: list[tuple[str, str]] = jobs) -> None:
            # A running job's re-fetch gate stays shut for 2 s: open it again, untimed, so
            # every delivery is the accepted one.
            engine.redis.delete(f"rd:hookgate:{jobs[i % len(jobs)][0]}",
                                f"rd:hooktrail:{jobs[i % len(jobs)][0]}")  # fmt: skip

        out[f"webhook {scenario}"] = (deliver, reopen if scenario == "accepted" else None)
    return out


def _page(engine: Any) -> dict[str, tuple[Call, Call | None]]:
    from worker.render.validation import validate_request
    from worker.web.jobs_page import Credentials, JobsPage, UiRequest

    request = validate_request({"model": "doubao-seedance-2-0-fast-260128", "prompt": "b"})
    for _ in range(20):
        engine.store.create_render(request, alias="default")
    page = JobsPage(Credentials(token=TOKEN), engine=lambda: engine)
    form = "application/x-www-form-urlencoded"

    def login(token: str) -> Any:
        body = f"token={token}&next=/ui/jobs".encode()
        return page(UiRequest("POST", "/login", "/ui", headers={"content-type": form},
                              body=body, client="10.0.0.1"))  # fmt: skip

    cookie = login(TOKEN).header("set-cookie").split(";")[0]
    bearer = {"authorization": f"Bearer {TOKEN}"}

    def get(path: str, headers: dict[str, str]) -> None:
        answer = page(UiRequest("GET", path, "/ui", headers=headers, client="10.0.0.2"))
        assert answer.status == 200, answer.status

    def forget(i: int) -> None:
        # The throttle would lock the bench out after 10 wrong tokens: both trees get the
        # same untimed cleanup, so the refused path measured is the plain 401.
        if i % 10 == 0:
            for key in engine.redis.scan_iter("rd:ui:fail:*"):
                engine.redis.delete(key)

    return {
        "sign-in form": (lambda i: login(TOKEN), None),
        "sign-in refused": (lambda i: login("x" + TOKEN), forget),
        "bearer asset": (lambda i: get("/static/app.css", bearer), None),
        "bearer jobs": (lambda i: get("/jobs", bearer), None),
        "cookie jobs": (lambda i: get("/jobs", {"cookie": cookie}), None),
    }


def _http(engine: Any) -> dict[str, tuple[Call, Call | None]]:
    import httpx
    import uvicorn

    from worker.infra.redis_server import free_port
    from worker.web.app import create_web_app

    port = free_port()
    config = uvicorn.Config(create_web_app(engine=lambda: engine, prefix="/hooks"),
                            host="127.0.0.1", port=port, log_level="warning", access_log=False)  # fmt: skip
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, daemon=True).start()  # ends with the child
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}/ui"
    form = {"token": TOKEN, "next": "/ui/jobs"}
    client = httpx.Client(follow_redirects=False)
    cookie = client.post(f"{base}/login", data=form).headers["set-cookie"].split(";")[0]
    client.cookies.clear()

    def get(path: str, headers: dict[str, str]) -> None:
        assert client.get(base + path, headers=headers).status_code == 200

    bearer = {"authorization": f"Bearer {TOKEN}"}
    browser = httpx.Client(follow_redirects=True)  # keeps the cookie, follows the 303

    def land(i: int) -> None:
        assert browser.post(f"{base}/login", data=form).status_code == 200

    return {
        "http sign-in": (lambda i: client.post(f"{base}/login", data=form), None),
        "http sign-in to jobs": (land, None),
        "http cookie jobs": (lambda i: get("/jobs", {"cookie": cookie}), None),
        "http bearer asset": (lambda i: get("/static/app.css", bearer), None),
    }


class Child:
    """One tree's long-lived measuring process."""

    def __init__(self, tree: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RELAYDANCE_")}
        env["PYTHONPATH"] = str(tree)
        code = (f"import sys; sys.path.insert(0, {str(tree)!r}); "
                f"sys.path.insert(1, {str(ROOT / 'bench')!r}); "
                "import bench_security; bench_security._serve()")  # fmt: skip
        self.tree = tree
        self.proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=tree, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
        self._expect("ready")

    def _expect(self, what: str) -> str:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(what) or what == "":
                return line
        raise SystemExit(f"the bench's child for {self.tree} stopped (exit {self.proc.wait()})")

    def run(self, name: str, calls: int) -> list[float]:
        stdin: IO[str] | None = self.proc.stdin
        assert stdin is not None
        stdin.write(json.dumps([name, calls]) + "\n")
        stdin.flush()
        times: list[float] = json.loads(self._expect("["))
        return times

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="25c9b21")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--calls", type=int, default=100)
    args = parser.parse_args()
    times: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    per_round: dict[str, list[float]] = {name: [] for name in ROWS}
    with tempfile.TemporaryDirectory(prefix="rd-bench-base-") as tmp:
        base = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base),
                        args.base], check=True, capture_output=True)  # fmt: skip
        children = {"before": Child(base), "after": Child(ROOT)}
        try:
            for n in range(args.rounds):
                for name in ROWS:
                    order = ("before", "after") if n % 2 == 0 else ("after", "before")
                    got = {side: children[side].run(name, args.calls) for side in order}
                    for side, found in got.items():
                        times[side].setdefault(name, []).extend(found)
                    per_round[name].append(statistics.median(got["after"])
                                           / statistics.median(got["before"]))  # fmt: skip
        finally:
            for child in children.values():
                child.close()
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)],
                           check=True, capture_output=True)  # fmt: skip
    report(args, times, per_round)


def report(
    args: argparse.Namespace, times: dict[str, dict[str, list[float]]],
    per_round: dict[str, list[float]],
) -> None:  # fmt: skip
    rows: dict[str, Any] = {}
    print(f"| path | before (µs, {args.base}) | after (µs) | after / before | added (µs) |")
    print("|---|---:|---:|---:|---:|")
    for name in ROWS:
        b = statistics.median(times["before"][name])
        a = statistics.median(times["after"][name])
        ratios = sorted(per_round[name])
        rows[name] = {"before_us": round(b, 1), "after_us": round(a, 1), "ratio": round(a / b, 3),
                      "ratio_rounds_min_median_max": [round(ratios[0], 2),
                                                      round(statistics.median(ratios), 2),
                                                      round(ratios[-1], 2)]}  # fmt: skip
        print(f"| {name} | {b:.1f} | {a:.1f} | {a / b:.2f} | {a - b:+.0f} |")
    data = {"base": args.base, "rounds": args.rounds, "calls": args.calls, "target": TARGET,
            "rows": rows, "machine": f"{os.cpu_count()} cores, Python {sys.version.split()[0]}"}  # fmt: skip
    path = ROOT / "bench" / "results" / "security.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
