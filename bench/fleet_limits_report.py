"""The Markdown tables and the verdicts on the targets of ``bench_fleet_limits.py``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from fleet_limits_measures import CAP, GEN, KEYS

TARGETS = {"throughput": 0.95, "slot_use": 0.95, "limit15_429s": 5, "limit15_throughput": 0.9}


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


def keep_other_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows just run, plus the earlier results' rows of scenarios not rerun (in order)."""
    path = Path(__file__).resolve().parent / "results" / "fleet_limits.json"
    if not path.exists():
        return rows
    fresh = {row["name"]: row for row in rows}
    earlier = json.loads(path.read_text()).get("rows", [])
    kept = [fresh.pop(row["name"], row) for row in earlier]
    return kept + list(fresh.values())
