"""The pages that only read: jobs, a job, batches, a batch and its report, keys.

Each takes the request and a :class:`Context` (who is looking, their CSRF token, where the
page is mounted) and returns HTML; with ``?fragment=1`` only the part that updates live,
which the page's script fetches every few seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlencode

from worker.batch.report import batch_report, render_report
from worker.batch.store import BatchNotFound
from worker.batch.tracker import BatchTracker
from worker.job.engine import Engine
from worker.job.listing import WINDOW, JobFilter, list_jobs
from worker.job.record import JobState
from worker.render.catalogue import MODELS
from worker.web.jobs_page.batches import list_batches, one_batch
from worker.web.jobs_page.detail import job_detail
from worker.web.jobs_page.http import UiRequest, UiResponse, html_response, text_response
from worker.web.jobs_page.keys import CHART_HEIGHT, chart_bars, key_rows, timing_rows
from worker.web.jobs_page.media import JOB_ID
from worker.web.jobs_page.render import render
from worker.web.jobs_page.sheet import contact_sheet

__all__ = ["POLL_SECONDS", "Context", "batch_page", "batches_page", "job_page", "jobs_page",
           "keys_page", "report_download", "sheet_page"]  # fmt: skip

POLL_SECONDS = 3
_NOTICES = {
    "canceled": "The job was canceled.",
    "resubmitted": "The job was submitted again.",
    "not_canceled": "The job was not canceled: it had already ended.",
    "retake": "This is a retake: a new job from the earlier one's request.",
}


@dataclass(frozen=True)
class Context:
    """What every page needs besides the request."""

    engine: Engine
    root: str
    csrf: str
    clip_url: Callable[[Any], str | None]  # a done job's presigned URL, in a bucket
    sign_out: bool = False  # signed in through the form: the header offers to sign out

    def base(self, request: UiRequest, active: str, **extra: Any) -> dict[str, Any]:
        """The template context shared by every page."""
        fragment = request.query.get("fragment") == "1"
        live = dict(request.query) | {"fragment": "1"}
        return {"root": self.root, "csrf": self.csrf, "active": active, "fragment": fragment,
                "sign_out": self.sign_out,
                "poll_url": f"{self.root}{request.path}?{urlencode(live)}",
                "poll_seconds": POLL_SECONDS, **extra}  # fmt: skip


def _page(template: str, context: dict[str, Any], **headers: str) -> UiResponse:
    name = template if not context["fragment"] else template.replace(".html", "_live.html")
    return html_response(render(name, **context), media_origin=headers.get("media", ""))


def _not_found(ctx: Context, request: UiRequest, what: str) -> UiResponse:
    body = render("message.html", **ctx.base(request, "", fragment=False),
                  title="Not found", message=what)  # fmt: skip
    return html_response(body, 404)


def jobs_page(request: UiRequest, ctx: Context) -> UiResponse:
    """The list of jobs, filtered and paged."""
    q = request.query
    wanted = JobFilter(state=q.get("state", ""), batch=q.get("batch", "").strip(),
                       alias=q.get("alias", ""), model=q.get("model", ""),
                       q=q.get("q", "")[:200], after=q.get("after", ""))  # fmt: skip
    engine = ctx.engine
    page = list_jobs(engine.redis, engine.store, wanted)
    filters = {k: v for k, v in q.items() if k in ("state", "batch", "alias", "model", "q") and v}
    aliases = sorted(set(engine.settings.keys()) | set(engine.limits.aliases_seen()))
    context = ctx.base(
        request, "jobs", page=page, filters=filters, wanted=wanted, window=WINDOW,
        states=[s.value for s in JobState], aliases=aliases, models=sorted(MODELS),
        provider_for=engine.settings.provider_for,
        older=f"{ctx.root}/jobs?{urlencode(filters | {'after': page.next_after})}"
        if page.next_after else "",
    )  # fmt: skip
    return _page("jobs.html", context)


def job_page(request: UiRequest, ctx: Context, job_id: str) -> UiResponse:
    """One job: timeline, request, money, manifest, clip and the actions it allows."""
    job = ctx.engine.store.get(job_id) if JOB_ID.fullmatch(job_id) else None
    if job is None:
        return _not_found(ctx, request, f"No job {job_id!r} (unknown, or expired).")
    bucket_url = ctx.clip_url(job) if ctx.engine.settings.output_bucket() else None
    detail = job_detail(ctx.engine, job, root=ctx.root, bucket_url=bucket_url)
    context = ctx.base(request, "jobs", d=detail, job=job,
                       provider=ctx.engine.settings.provider_for(job.alias),
                       notice=_NOTICES.get(request.query.get("notice", ""), ""))  # fmt: skip
    return _page("job.html", context, media=detail.media_origin)


def batches_page(request: UiRequest, ctx: Context) -> UiResponse:
    """The newest batches with their progress and money."""
    views, after = list_batches(ctx.engine, after=request.query.get("after", ""))
    context = ctx.base(request, "batches", views=views,
                       older=f"{ctx.root}/batches?after={after}" if after else "")  # fmt: skip
    return _page("batches.html", context)


def batch_page(request: UiRequest, ctx: Context, batch_id: str) -> UiResponse:
    """One batch: progress by state, spend against budget, throughput and ETA."""
    try:
        view = one_batch(ctx.engine, batch_id)
    except BatchNotFound:
        return _not_found(ctx, request, f"No batch {batch_id!r} (unknown, or expired).")
    context = ctx.base(request, "batches", v=view)
    return _page("batch.html", context)


def sheet_page(request: UiRequest, ctx: Context, batch_id: str) -> UiResponse:
    """The batch's contact sheet: a grid of its outputs, each with its line, prompt, state."""
    wanted = request.query.get("page", "1")
    page = int(wanted) if wanted.isascii() and wanted.isdigit() and len(wanted) < 7 else 1
    try:
        sheet = contact_sheet(ctx.engine, batch_id, root=ctx.root, page=page)
    except BatchNotFound:
        return _not_found(ctx, request, f"No batch {batch_id!r} (unknown, or expired).")
    link = f"{ctx.root}/batches/{sheet.status.id}/sheet?page="
    newer = f"{link}{sheet.page - 1}" if sheet.page > 1 else ""
    later = f"{link}{sheet.page + 1}" if sheet.page < sheet.pages else ""
    context = ctx.base(request, "batches", sheet=sheet, st=sheet.status, newer=newer, later=later)
    return _page("sheet.html", context, media=sheet.media_origin)


def report_download(request: UiRequest, ctx: Context, batch_id: str, fmt: str) -> UiResponse:
    """The batch report (``relaydance batch report``) as a CSV or JSON download."""
    try:
        status, rows = batch_report(BatchTracker(ctx.engine), batch_id)
    except BatchNotFound:
        return _not_found(ctx, request, f"No batch {batch_id!r} (unknown, or expired).")
    kind: Literal["csv", "json"] = "csv" if fmt == "csv" else "json"
    body = render_report(status, rows, fmt=kind)
    disposition = f'attachment; filename="{status.id}.{kind}"'
    content_type = "text/csv; charset=utf-8" if kind == "csv" else "application/json"
    return text_response(body, content_type=content_type,
                         extra=[("Content-Disposition", disposition)])  # fmt: skip


def keys_page(request: UiRequest, ctx: Context) -> UiResponse:
    """Per alias: limits, slots, request rate, 429s by minute; learned generation times."""
    rows = key_rows(ctx.engine)
    context = ctx.base(request, "keys", rows=rows, chart_bars=chart_bars, height=CHART_HEIGHT,
                       timings=timing_rows(ctx.engine))  # fmt: skip
    return _page("keys.html", context)
