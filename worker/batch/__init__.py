"""Batches of render requests: parse and check a file, submit it under a budget, follow it,
cancel and resume it, and report on it line by line.

::

    parse.py    JSON Lines / CSV text -> checked lines (every bad line reported at once)
    refs.py     one line's refs (image lines' stills as its first images), checked alone
    storyboard.py  the file's refs as a whole (ids, image lines, cycles) and their order
    reading.py  batch files read as a stream within caps (size, line length, lines)
    plan.py     checked lines -> distinct requests by content fingerprint, with costs
    budget.py   atomic reservations in Redis (Lua), in micro-dollars
    store.py    the batch's Redis keys
    status.py   a submission's result and a batch's status; line states
    tracker.py  follow a batch: settle finished jobs, status, wait, cancel, job-done
    service.py  submit and resume (claim, reserve, write, send)
    chains.py   a storyboard's chains as they are enqueued: claimed whole, jobs linked
    report.py   one row per line as CSV or JSON; the progress line
"""

from __future__ import annotations

from worker.batch.parse import (
    BatchFileError,
    BatchLine,
    InvalidLine,
    ParsedBatch,
    parse_records,
    parse_text,
)
from worker.batch.plan import BatchPlan, InvalidBatch, content_fingerprint, plan_batch
from worker.batch.reading import read_batch_file
from worker.batch.report import ReportRow, batch_report, progress_line, render_report
from worker.batch.service import JOB_DONE_TASK, Batches
from worker.batch.status import BatchStatus, Submission
from worker.batch.store import BatchNotFound

__all__ = [
    "JOB_DONE_TASK",
    "BatchFileError",
    "BatchLine",
    "BatchNotFound",
    "BatchPlan",
    "BatchStatus",
    "Batches",
    "InvalidBatch",
    "InvalidLine",
    "ParsedBatch",
    "ReportRow",
    "Submission",
    "batch_report",
    "content_fingerprint",
    "parse_records",
    "parse_text",
    "plan_batch",
    "progress_line",
    "read_batch_file",
    "render_report",
]
