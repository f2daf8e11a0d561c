"""A batch's contact sheet over 1,000 lines, and the simulator's stills.

Run: ``.venv/bin/python bench/bench_contact_sheet.py`` (about half a minute; ``--lines``,
``--repeat``). A batch of ``--lines`` lines is enqueued into a private redis-server (no
worker: the messages wait in the broker); every line's job is then recorded done with a
stored output, half clips and half stills, as the download step records them. The sheet's
first page and its live fragment (fetched every 3 s by an open page), and the batch page's
fragment for comparison, are answered by the
page's own handler (:class:`worker.web.jobs_page.JobsPage`: Redis reads, the batch report,
templating; no HTTP server), signed in with a bearer token; Redis commands are counted with
``INFO commandstats``. Then the time the simulator takes to draw one 1024x1024 still.
Prints a Markdown table and writes ``bench/results/contact_sheet.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from bench.bench_jobs_page import measure  # noqa: E402
from bench.harness import machine, median, percentile, write_results  # noqa: E402
from worker.infra.redis_server import RedisServer  # noqa: E402

MODEL = "doubao-seedance-2-0-fast-260128"
TOKEN = "bench-token--Zn0R4hprV_9eC2dFPb776pZfQm5gKXj"
MP4 = b"\x00\x00\x00\x18ftypmp42" + bytes(4096)


def fill(lines: int, out: Path) -> str:
    """A ``lines``-line batch whose every job is done: even lines clips, odd lines stills."""
    from simulator import image_png
    from worker.batch import Batches, parse_records
    from worker.job.engine import get_engine
    from worker.job.record import JobState

    engine = get_engine()
    records = [{"model": MODEL, "prompt": f"shot {i}: the harbour at dawn", "seconds": 5}
               for i in range(lines)]  # fmt: skip
    sub = Batches(engine).submit(parse_records(records))
    png = image_png("img_bench", 1024, 1024)
    for index, job_id in Batches(engine).job_ids(sub.batch_id).items():
        path = out / f"{job_id}{'.png' if index % 2 else '.mp4'}"
        path.write_bytes(png if index % 2 else MP4)
        engine.store._change(job_id, states=None, to=JobState.DONE,
                            set={"output_path": str(path), "output_uri": path.as_uri()})  # fmt: skip
    return sub.batch_id


def still_ms(repeat: int) -> list[float]:
    """Seconds to draw one 1024x1024 still (a fresh id each time: no cache)."""
    from simulator.stills import image_png

    times = []
    for i in range(repeat):
        start = time.perf_counter()
        image_png(f"img_bench_{i}_{time.monotonic_ns()}", 1024, 1024)
        times.append(time.perf_counter() - start)
    return times


def run(server: RedisServer, lines: int, repeat: int) -> list[dict[str, Any]]:
    from config.settings import get_settings
    from worker.job.engine import reset_engine
    from worker.web.jobs_page import Credentials, JobsPage, UiRequest

    client = redis.Redis.from_url(server.url, decode_responses=True)
    client.flushall()
    get_settings.cache_clear()
    reset_engine()
    batch_id = fill(lines, Path(os.environ["RELAYDANCE_OUTPUT_DIR"]))
    page = JobsPage(Credentials(token=TOKEN))

    def get(path: str = "/sheet", **query: str) -> Callable[[], Any]:
        request = UiRequest("GET", f"/batches/{batch_id}{path}", "/ui", query=query,
                            headers={"authorization": f"Bearer {TOKEN}", "host": "h"})  # fmt: skip

        def call() -> None:
            answer = page(request)
            assert answer.status == 200, answer.status

        return call

    rows = []
    for name, call in (("sheet, page 1 (48 tiles)", get()),
                       ("sheet's live fragment (every 3 s)", get(fragment="1")),
                       ("batch page's live fragment, to compare", get("", fragment="1"))):  # fmt: skip
        times, commands = measure(client, call, repeat)
        rows.append({"lines": lines, "case": name, "p50_ms": round(median(times) * 1e3, 2),
                     "p95_ms": round(percentile(times, 95) * 1e3, 2),
                     "redis_commands": commands})  # fmt: skip
    times = still_ms(repeat)
    rows.append({"lines": None, "case": "simulator: draw a 1024x1024 still",
                 "p50_ms": round(median(times) * 1e3, 2),
                 "p95_ms": round(percentile(times, 95) * 1e3, 2), "redis_commands": 0})  # fmt: skip
    client.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    with RedisServer() as server, tempfile.TemporaryDirectory() as out:
        os.environ.update({"REDIS_URL": server.url, "RELAYDANCE_API_KEY": "sk-bench",
                           "RELAYDANCE_UI_TOKEN": TOKEN, "RELAYDANCE_OUTPUT_DIR": out})  # fmt: skip
        rows = run(server, args.lines, args.repeat)
    print(f"machine: {machine()}\n")
    print("| lines | case | p50 | p95 | Redis commands |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['lines'] or '-'} | {r['case']} | {r['p50_ms']} ms | {r['p95_ms']} ms "
              f"| {r['redis_commands']} |")  # fmt: skip
    write_results("contact_sheet", {"machine": machine(), "rows": rows})


if __name__ == "__main__":
    main()
