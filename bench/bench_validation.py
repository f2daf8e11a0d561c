"""Time per ``validate_request`` call for the largest requests the provider accepts.

    .venv/bin/python bench/bench_validation.py [--rounds 5] [--runs 2000]

Each scenario is validated ``rounds x runs`` times, every call timed on its own with
``time.perf_counter``; the median and 95th percentile per call are reported (target: a
median under 1 ms, so validating in the producer's request path costs nothing visible).
Scenarios: 9 image URLs with a 4000-character prompt citing @image1..@image9; the same
with 9 local image files (each stat'ed, opened and checked by its magic bytes); a minimal
text-only request for scale. Prints a Markdown table and writes
bench/results/validation.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from simulator import PNG_BYTES  # noqa: E402
from worker.render.request import MAX_PROMPT_CHARS  # noqa: E402
from worker.render.validation import validate_request  # noqa: E402

TARGET_MS = 1.0
MODEL = "doubao-seedance-2-0-1080p"


def long_prompt() -> str:
    """Exactly MAX_PROMPT_CHARS characters citing @image1..@image9 along the way."""
    parts = [f"@image{i} walks through the scene in golden light, " for i in range(1, 10)]
    text = "".join(parts)
    filler = " the camera glides slowly around the dancers as the music swells"
    while len(text) < MAX_PROMPT_CHARS:
        text += filler
    return text[:MAX_PROMPT_CHARS]


def scenarios(files: list[str]) -> dict[str, dict[str, Any]]:
    prompt = long_prompt()
    return {
        "9 image URLs, 4000-char prompt": {
            "model": MODEL,
            "prompt": prompt,
            "seconds": "10",
            "images": [f"https://cdn.example.com/refs/{i}.jpg" for i in range(1, 10)],
        },
        "9 local image files, 4000-char prompt": {
            "model": MODEL,
            "prompt": prompt,
            "seconds": "10",
            "images": files,
        },
        "text only, short prompt": {"model": MODEL, "prompt": "A dancer spins", "seconds": 5},
    }


def time_calls(call: Callable[[], object], *, rounds: int, runs: int) -> list[float]:
    """Seconds per call, every call timed separately."""
    for _ in range(min(runs, 200)):  # warm caches (pydantic, regex, file system)
        call()
    samples: list[float] = []
    clock = time.perf_counter
    for _ in range(rounds):
        for _ in range(runs):
            start = clock()
            call()
            samples.append(clock() - start)
    return samples


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure(*, rounds: int, runs: int) -> list[dict[str, Any]]:
    """Time ``validate_request`` on every scenario: median, p95 and max in ms."""
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="relaydance-bench-") as tmp:
        os.environ["RELAYDANCE_MEDIA_DIRS"] = tmp  # the local files below may be used
        files = []
        for i in range(1, 10):
            path = Path(tmp) / f"ref{i}.png"
            path.write_bytes(PNG_BYTES)
            files.append(str(path))
        for name, data in scenarios(files).items():
            validate_request(data)  # fails loudly here if the scenario is not valid

            def call(data: dict[str, Any] = data) -> object:
                return validate_request(data)

            samples = time_calls(call, rounds=rounds, runs=runs)
            results.append(
                {
                    "scenario": name,
                    "calls": len(samples),
                    "median_ms": round(statistics.median(samples) * 1000, 4),
                    "p95_ms": round(percentile(samples, 0.95) * 1000, 4),
                    "max_ms": round(max(samples) * 1000, 4),
                }
            )
    return results


def print_table(results: list[dict[str, Any]]) -> None:
    """The Markdown table, each scenario against the target median."""
    print(
        f"| scenario | calls | median (ms) | p95 (ms) | max (ms) | target median < {TARGET_MS} ms |"
    )
    print("|---|---|---|---|---|---|")
    for row in results:
        verdict = "yes" if row["median_ms"] < TARGET_MS else "NO"
        print(
            f"| {row['scenario']} | {row['calls']} | {row['median_ms']:.4f} | "
            f"{row['p95_ms']:.4f} | {row['max_ms']:.4f} | {verdict} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()

    results = measure(rounds=args.rounds, runs=args.runs)
    print_table(results)
    figures = {
        "results": results,
        "target_median_ms": TARGET_MS,
        "within_target": all(r["median_ms"] < TARGET_MS for r in results),
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}, {_cpus()} cpu",
        "command": f"bench/bench_validation.py --rounds {args.rounds} --runs {args.runs}",
    }
    out = ROOT / "bench" / "results" / "validation.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\nwrote {out.relative_to(ROOT)}")


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    main()
