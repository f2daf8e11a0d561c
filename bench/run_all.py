"""Run every benchmark, one after the other: ``.venv/bin/python bench/run_all.py``.

Each writes its figures to ``bench/results/<name>.json``; ``docs/benchmarks.md`` quotes
them with the command that produced them. Pass names to run a subset, e.g.
``bench/run_all.py pipeline limits``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["validation", "simulator", "download", "limits", "pipeline", "fleet_limits",
         "webhooks", "batches", "cpu", "realorder", "chaos", "night", "redis_restart",
         "jobs_page", "contact_sheet", "wait", "storyboard", "still_upload"]  # fmt: skip


def main() -> int:
    names = sys.argv[1:] or ORDER
    failed = []
    for name in names:
        script = HERE / f"bench_{name}.py"
        if not script.exists():
            print(f"== {name}: no {script.name}, skipped", flush=True)
            continue
        print(f"== {name}", flush=True)
        started = time.monotonic()
        code = subprocess.call([sys.executable, str(script)])
        print(f"== {name}: exit {code} in {time.monotonic() - started:.0f}s", flush=True)
        if code:
            failed.append(name)
    if failed:
        print("failed:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
