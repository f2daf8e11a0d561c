"""A job's status for people and programs: ``relaydance status`` and the examples' pages.

:func:`status_view` is the job's summary plus :func:`worker.job.explain.explain`'s answer and
every time in ISO 8601 (what ``--json`` and the examples' JSON endpoints return);
:func:`status_lines` renders it for a terminal with human times.
"""

from __future__ import annotations

from typing import Any

from worker.infra.timefmt import at, iso
from worker.job.engine import Engine
from worker.job.explain import explain, facts_for
from worker.job.record import Job

__all__ = ["status_lines", "status_view"]


def status_view(engine: Engine, job: Job, *, now: float | None = None) -> dict[str, Any]:
    """The job's summary plus why it waits and every time in ISO 8601 (``status --json``)."""
    facts = facts_for(engine, job, now=now)
    summary = job.summary()
    summary["times_iso"] = {name: iso(value) for name, value in job.times.items()}
    summary["waiting"] = explain(job, facts).as_json(now=facts.now)
    summary["on_done"] = {
        "task": job.on_done,
        "status": job.on_done_status,
        "error": job.on_done_error,
        "sent_at": job.on_done_sent_at,
    }
    return summary


def status_lines(view: dict[str, Any], *, now: float) -> list[str]:
    """``relaydance status`` for people: what the job waits for first, then its record."""
    waiting = view["waiting"]
    lines = [f"{'job':>15}: {view['job_id']}", f"{'state':>15}: {view['state']}"]
    lines.append(f"{'now':>15}: {waiting['text']}")
    lines += [f"{'note':>15}: {note}" for note in waiting["notes"]]
    shown = ("key", "model", "seconds", "remote_task_id", "polls", "output_path", "size",
             "sha256", "estimated_cost", "error_code", "error_message")  # fmt: skip
    for name in shown:
        if view.get(name) not in (None, "", 0) or name == "polls":
            lines.append(f"{name:>15}: {view[name]}")
    if view.get("kind") == "image":  # its stills, each where it is stored and its hash
        lines.append(f"{'kind':>15}: image, {len(view.get('outputs') or [])} stored")
        for n, out in enumerate(view.get("outputs") or [], start=1):
            lines.append(f"{f'image {n}':>15}: {out.get('path') or out.get('uri')} "
                         f"({out.get('sha256')})")  # fmt: skip
    if view.get("duplicate_spend"):
        lines.append(f"{'duplicate_spend':>15}: {view['duplicate_spend']} "
                     f"({', '.join(view['duplicate_remote_ids'])})")  # fmt: skip
    on_done = view.get("on_done") or {}
    if on_done.get("task"):
        lines.append(f"{'on_done':>15}: {on_done['task']} ({on_done.get('status') or 'pending'})")
    for step, when in sorted(view["times"].items(), key=lambda item: item[1]):
        lines.append(f"{'at ' + step:>15}: {at(when, now=now)}")
    return lines
