"""What a batch produced, one row per line, as CSV or JSON; and its one-line progress.

Columns: line, job_id, state, output_path (a local output's file), output_uri (file:// or
s3://), sha256, seconds (of video; empty for stills), estimated_cost, billing (none,
pending, unknown, billed, not_billed: what the provider may have charged), error, note,
key (the alias that rendered it), actual_cost (what the provider said it charged, when it
says: Kinovi's ``creditsUsed``), id (the line's own ``id``), model, prompt (the job's: a
retake's edited prompt), earlier_takes (job ids of the line's earlier takes,
``;``-separated, oldest first; ``job_id`` is the latest take), made_from (a storyboard
clip's: the lines of the stills it is made from, ``;``-separated, in the order of its
refs). Columns are only ever added at the end, so that earlier columns keep their places.
A request that several lines repeat is priced on its first line only (the others say
``same request as line N``); a reused render costs nothing here. Text cells that a
spreadsheet would run as a formula (starting ``=``, ``+``, ``-``, ``@``, tab or CR: a
prompt or a field name from the batch file can) get a leading ``'``.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from typing import Any, Literal

from worker.batch.budget import SKIPPED_BUDGET, from_micros
from worker.batch.parse import InvalidLine
from worker.batch.status import BatchStatus, ItemView, is_final_line_state
from worker.batch.store import REUSE_PREFIX, job_of
from worker.batch.tracker import BatchTracker

__all__ = ["COLUMNS", "ReportRow", "batch_report", "progress_line", "render_report"]

COLUMNS = ("line", "job_id", "state", "output_path", "output_uri", "sha256", "seconds",
           "estimated_cost", "billing", "error", "note", "key", "actual_cost", "id", "model",
           "prompt", "earlier_takes", "made_from")  # fmt: skip
# Cells starting with these are formulas (or become one) in Excel, LibreOffice and Sheets.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_ALWAYS_SHOWN = ("done", "running", "waiting", "failed")
_JOB_FIELDS = ["output_path", "output_uri", "sha256", "error_code", "error_message", "billing",
               "orphans", "actual_cost", "request"]  # fmt: skip


@dataclass(frozen=True)
class ReportRow:
    """One line of the batch and what became of it."""

    line: int
    job_id: str | None
    state: str
    output_path: str | None
    output_uri: str | None
    sha256: str | None
    seconds: int | None
    estimated_cost: float
    billing: str | None
    error: str | None
    note: str | None = None
    key: str | None = None
    actual_cost: float | None = None
    id: str | None = None  # the line's own id
    model: str | None = None
    prompt: str | None = None
    earlier_takes: str | None = None  # job ids, ";"-separated, oldest first
    made_from: str | None = None  # a clip's stills' lines, ";"-separated, in order


def batch_report(batches: BatchTracker, batch_id: str) -> tuple[BatchStatus, list[ReportRow]]:
    """The batch's status and one row per line, in line order (each line's latest take)."""
    status, view = batches.view(batch_id)
    record = view.record
    details = _job_details(batches, view.values)
    takes = batches.store.takes(record.id)
    first_line: dict[int, int] = {}
    for line, index in record.lines:
        first_line.setdefault(index, line)
    rows = [
        _line_row(view, status, line, index, details.get(index, {}), takes.get(index, []),
                  first_line=first_line)
        for line, index in record.lines
    ]  # fmt: skip
    rows += [_invalid_row(bad) for bad in record.invalid]
    rows.sort(key=lambda row: row.line)
    return status, rows


def _line_row(
    view: ItemView, status: BatchStatus, line: int, index: int, job: dict[str, Any],
    takes: list[str], *, first_line: dict[int, int],
) -> ReportRow:  # fmt: skip
    """One line's row: its latest take's job, or the note that it shares or reuses one."""
    record = view.record
    item, first = view.items[index], first_line[index]
    state = view.states[index]
    value = view.values.get(index, "")
    reused = value.startswith(REUSE_PREFIX)
    duplicate = first != line
    note = None
    if duplicate:
        note = f"same request as line {first}"
    elif reused:
        note = "reused an earlier render of the same request"
    error = _line_error(state, job.get("error_code"), job.get("error_message"),
                        budget=status.budget_usd, batch_id=status.id)  # fmt: skip
    billing, orphans, actual = job.get("billing"), job.get("orphans"), job.get("actual_cost")
    if billing and int(orphans or 0):
        billing = f"{billing} (+{orphans} possibly billed)"
    request = json.loads(job.get("request") or "null") or item.request
    return ReportRow(
        line=line,
        key=item.alias or record.alias,
        job_id=job_of(value),
        state=state,
        output_path=job.get("output_path"),
        output_uri=job.get("output_uri"),
        sha256=job.get("sha256"),
        seconds=int(item.request["seconds"]) if "seconds" in item.request else None,
        estimated_cost=0.0 if (duplicate or reused) else from_micros(item.cost_micros),
        actual_cost=None if (duplicate or reused or actual is None) else float(actual),
        billing=None if (duplicate or reused) else billing,
        error=error,
        note=note,
        id=record.line_ids.get(line),
        model=str(request.get("model", "")) or None,
        prompt=request.get("prompt"),
        earlier_takes=";".join(takes) or None,
        made_from=";".join(str(first_line[ref]) for ref in item.refs) or None,
    )


def _job_details(batches: BatchTracker, values: dict[int, str]) -> dict[int, dict[str, Any]]:
    """The report's fields of each line's job, read in one round trip."""
    jobs = {index: job for index, value in values.items() if (job := job_of(value))}
    pipe = batches.engine.redis.pipeline(transaction=False)
    ordered = sorted(jobs.items())
    for _, job_id in ordered:
        pipe.hmget(batches.engine.store.key(job_id), _JOB_FIELDS)
    return {
        index: dict(zip(_JOB_FIELDS, row, strict=True))
        for (index, _), row in zip(ordered, pipe.execute(), strict=True)
    }


def _line_error(
    state: str, code: str | None, message: str | None, *, budget: float | None, batch_id: str
) -> str | None:
    """What went wrong with a line, and what to do about it."""
    if state == "failed":
        return f"{code}: {message}" if code else message
    if state == "lost":
        return "the job was never created (enqueueing was interrupted); resume the batch"
    if state == SKIPPED_BUDGET:
        return (
            f"not submitted: the budget (${budget:.2f}) would have been exceeded; "
            f"raise it with: relaydance batch resume {batch_id} --budget USD"
        )
    if state == "canceled":
        return "canceled; resume the batch to render it"
    if state == "submit_unknown":
        return (
            f"the submission may have reached the provider ({message}); decide with "
            "relaydance resubmit JOB_ID (may pay twice) or relaydance cancel JOB_ID"
        )
    return None


def _invalid_row(bad: InvalidLine) -> ReportRow:
    """The row of a line refused up front (--skip-invalid)."""
    problems = "; ".join(f"{name}: {message}" for name, message in bad.problems)
    return ReportRow(
        line=bad.line,
        key=None,
        job_id=None,
        state="invalid",
        output_path=None,
        output_uri=None,
        sha256=None,
        seconds=None,
        estimated_cost=0.0,
        actual_cost=None,
        billing=None,
        error=problems,
        note="skipped",
        id=bad.line_id,
    )


def render_report(
    status: BatchStatus, rows: list[ReportRow], *, fmt: Literal["csv", "json"]
) -> str:
    """The report as CSV (one row per line) or JSON (the batch summary and the rows)."""
    if fmt == "json":
        body: dict[str, Any] = {"batch": status.to_dict(), "rows": [asdict(r) for r in rows]}
        return json.dumps(body, indent=2) + "\n"
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in asdict(row).items()})
    return out.getvalue()


def _cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text, never runs as a formula (OWASP's advice)."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "--"
    seconds = int(seconds + 0.5)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def progress_line(status: BatchStatus, *, elapsed: float, done_before: int, width: int = 20) -> str:
    """``[#####.....] 12/50 done | 4 running | ... | 2 invalid | 0.8/s | ETA 45s | $2.40 spent``.

    Throughput counts lines done since following began (``done_before`` were done then).
    Done, running, waiting and failed are always shown; the other groups of
    :data:`~worker.batch.status.LINE_GROUPS` when they hold a line.
    """
    total = max(status.lines, 1)
    settled = sum(1 for s in status.line_states.values() if is_final_line_state(s))
    filled = int(width * settled / total)
    rate = (status.done - done_before) / elapsed if elapsed > 0 else 0.0
    left = status.lines - settled
    eta = left / rate if rate > 0 else (0.0 if left == 0 else None)
    parts = [f"[{'#' * filled}{'.' * (width - filled)}] {status.done}/{status.lines} done"]
    for group, count in status.grouped():
        if group.key in _ALWAYS_SHOWN[1:] or (count and group.key not in _ALWAYS_SHOWN):
            parts.append(f"{count} {group.label}")
    parts.append(f"{rate:.2f}/s")
    parts.append(f"ETA {_duration(eta)}")
    money = f"${status.spent_usd:.2f} spent, ${status.committed_usd:.2f} committed"
    if status.unknown_usd:
        money += f", ${status.unknown_usd:.2f} possibly billed (unknown)"
    if status.budget_usd is not None:
        money += f" of ${status.budget_usd:.2f}"
    parts.append(money)
    return " | ".join(parts)
