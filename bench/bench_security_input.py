"""The cost of the input checks on the producer's hot path, before and after.

    .venv/bin/python bench/bench_security_input.py [--base 14e040a] [--pairs 3]

Two measurements, each in a fresh child process importing either this tree ("after") or
a temporary git worktree of ``--base`` ("before", removed afterwards), run in
alternation so that drift of the shared machine falls on both alike:

- ``validate_request`` of a request with 9 local PNG files and a 4000-character prompt
  (the allow-list, the resolve and the signature check of every file), median per call;
- ``read_batch_file`` of a 2000-line JSON Lines file, half its lines with a local image
  (the capped streaming read and every line's checks), median per file.

Prints a Markdown table (medians, ratio after/before; target: under 5 % slower) and writes
bench/results/security_input.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from simulator import PNG_BYTES  # noqa: E402

MODEL = "doubao-seedance-2-0-1080p"
TARGET = 1.05

CHILD = r"""
import json, statistics, sys, time
from pathlib import Path
from worker.batch import read_batch_file
from worker.render.validation import validate_request

media, batch, runs, rounds = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
prompt = ("@image1 a dancer turns in golden light " * 200)[:4000]
request = {"model": "MODEL_ID", "prompt": prompt, "seconds": "10",
           "images": [str(media / f"ref{i}.png") for i in range(9)]}
for _ in range(20):
    validate_request(request)
times = []
for _ in range(runs):
    start = time.perf_counter()
    validate_request(request)
    times.append(time.perf_counter() - start)
read_batch_file(batch)
parses = []
for _ in range(rounds):
    start = time.perf_counter()
    parsed = read_batch_file(batch)
    parses.append(time.perf_counter() - start)
assert parsed.ok and len(parsed.lines) == 2000, parsed.messages()[:3]
print(json.dumps({"validate": statistics.median(times), "batch": statistics.median(parses)}))
""".replace("MODEL_ID", MODEL)


def _fixtures(tmp: Path) -> tuple[Path, Path]:
    media = tmp / "media"
    media.mkdir()
    for i in range(9):
        (media / f"ref{i}.png").write_bytes(PNG_BYTES)
    batch = media / "batch.jsonl"
    with batch.open("w") as fh:
        for n in range(2000):
            line: dict[str, object] = {"model": MODEL, "prompt": f"clip {n} of the harbour"}
            if n % 2:
                line["images"] = [f"ref{n % 9}.png"]
            fh.write(json.dumps(line) + "\n")
    return media, batch


def _run(tree: Path, media: Path, batch: Path, *, runs: int, rounds: int) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAYDANCE_")}
    env.update(PYTHONPATH=str(tree), RELAYDANCE_MEDIA_DIRS=str(media))
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(media), str(batch), str(runs), str(rounds)],
        cwd=tree, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="14e040a", help="commit before the checks")
    parser.add_argument("--pairs", type=int, default=3, help="before/after child pairs")
    parser.add_argument("--runs", type=int, default=400, help="validate_request calls a child")
    parser.add_argument("--rounds", type=int, default=7, help="batch parses a child")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rd-bench-sec-") as name:
        tmp = Path(name)
        media, batch = _fixtures(tmp)
        base = tmp / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base),
                        args.base], check=True)  # fmt: skip
        try:
            samples: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
            for _ in range(args.pairs):
                for label, tree in (("before", base), ("after", ROOT)):
                    samples[label].append(
                        _run(tree, media, batch, runs=args.runs, rounds=args.rounds)
                    )
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)],
                           check=True)  # fmt: skip
    report = {"base": args.base, "pairs": args.pairs, "runs": args.runs, "rounds": args.rounds}
    print("| measurement | before (median) | after (median) | after / before |")
    print("|---|---|---|---|")
    for key, what, unit, scale in (
        ("validate", "validate_request, 9 local PNGs", "µs", 1e6),
        ("batch", "read_batch_file, 2000 lines", "ms", 1e3),
    ):
        before = statistics.median(s[key] for s in samples["before"])
        after = statistics.median(s[key] for s in samples["after"])
        ratio = after / before
        report[key] = {"before_s": before, "after_s": after, "ratio": ratio}
        print(f"| {what} | {before * scale:.1f} {unit} | {after * scale:.1f} {unit} | "
              f"{ratio:.3f} ({'within' if ratio < TARGET else 'over'} the 5 % target) |")  # fmt: skip
    out = ROOT / "bench" / "results" / "security_input.json"
    out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
