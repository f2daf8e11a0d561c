"""Job-level metrics in Prometheus text format, read from the job store and the limits.

Served at ``/metrics`` by the ``web`` process. Flower exports task-level metrics of its
own at its ``/metrics``; these are the figures only the job records know: jobs by state,
per-key slots and waiting lines, 429s, polls per generated job, and estimated spend.
"""

from __future__ import annotations

from collections.abc import Iterable

from worker.engine import Engine
from worker.jobs import JobState

__all__ = ["CONTENT_TYPE", "METRICS_KEY", "record_generated", "render_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METRICS_KEY = "rd:metrics"


def record_generated(engine: Engine, *, polls: int, cost: float | None) -> None:
    """Count one generated job: its polls and its cost (the provider's, else the estimate)."""
    pipe = engine.redis.pipeline(transaction=False)
    pipe.hincrby(METRICS_KEY, "generated", 1)
    pipe.hincrby(METRICS_KEY, "polls", polls)
    if cost:
        pipe.hincrbyfloat(METRICS_KEY, "spend_usd", cost)
    pipe.execute()


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _family(name: str, kind: str, help_: str, samples: Iterable[tuple[str, float]]) -> list[str]:
    lines = [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
    lines += [f"{name}{labels} {value:g}" for labels, value in samples]
    return lines


def render_metrics(engine: Engine) -> str:
    """The current figures as Prometheus text exposition."""
    counts = engine.store.counts()
    totals = engine.redis.hgetall(METRICS_KEY)
    snaps = engine.limit_snapshots()
    aliases = list(snaps)
    lines: list[str] = []
    lines += _family(
        "relaydance_jobs",
        "gauge",
        "Jobs per state (final states count every job that reached them and has not expired).",
        [(f'{{state="{s.value}"}}', float(counts.get(s.value, 0))) for s in JobState],
    )
    lines += _family(
        "relaydance_jobs_active", "gauge", "Jobs not yet final.",
        [("", float(engine.store.active_count()))],
    )  # fmt: skip
    per_key = [
        ("relaydance_key_limit_configured", "Configured concurrency limit.", "configured"),
        ("relaydance_key_limit_effective", "Effective limit after 429s (AIMD).", "effective"),
        ("relaydance_key_slots_in_use", "Concurrency slots held.", "in_use"),
        ("relaydance_key_jobs_waiting", "Jobs waiting in line for a slot.", "waiting"),
        ("relaydance_key_requests_last_minute", "HTTP calls in the last minute.",
         "requests_last_minute"),
        ("relaydance_key_rate_limited_last_hour", "HTTP 429s in the last hour.",
         "rate_limited_last_hour"),
    ]  # fmt: skip
    for name, help_, field in per_key:
        samples = [(f'{{key="{_label(a)}"}}', float(snaps[a][field])) for a in aliases]  # type: ignore[literal-required]
        lines += _family(name, "gauge", help_, samples)
    generated = float(totals.get("generated", 0))
    lines += _family(
        "relaydance_generated_jobs_total", "counter", "Jobs the provider generated.",
        [("", generated)],
    )  # fmt: skip
    lines += _family(
        "relaydance_polls_total", "counter", "Polls spent on generated jobs.",
        [("", float(totals.get("polls", 0)))],
    )  # fmt: skip
    in_doubt = engine.store.get_many(engine.store.in_state(JobState.SUBMIT_UNKNOWN))
    lines += _family(
        "relaydance_possibly_billed_usd", "gauge",
        "Estimated cost of jobs whose submission is unknown: they may be billed.",
        [("", float(sum(job.cost or 0.0 for job in in_doubt if job is not None)))],
    )  # fmt: skip
    lines += _family(
        "relaydance_spend_usd_total", "counter",
        "Spend on generated jobs: the provider's reported cost where it gives one, else the "
        "estimate (failed generations are not billed).",
        [("", float(totals.get("spend_usd", 0.0)))],
    )  # fmt: skip
    return "\n".join(lines) + "\n"
