"""Views: enqueue a render (form or JSON), show its status, serve the finished clip (from
the output directory, or through a presigned URL when clips go to a bucket).

Requests are validated exactly as the CLI validates them (``worker.web.integrations.forms``):
nothing is defaulted, dropped or repaired, and the form keeps the user's input on error.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
)
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from config.settings import get_settings
from worker.api import JobNotFound, clip_url, enqueue_render, get_job
from worker.cli.status_view import status_view
from worker.errors import InvalidRequest
from worker.job.engine import get_engine
from worker.job.record import Job
from worker.render.catalogue import SEEDANCE_RATIOS
from worker.web.integrations.forms import (
    form_models,
    form_values,
    problems_json,
    request_from_form,
    request_from_json,
    seconds_range,
    when,
)

from .records import TASK_NAME, recorded

_JOB_ID = re.compile(r"rdj_[0-9a-f]{32}")
NOT_FOUND = {"error": "no such render"}  # docs/django.md


def _find(job_id: str) -> Job | None:
    if not _JOB_ID.fullmatch(job_id):
        return None
    try:
        return get_job(job_id)
    except JobNotFound:
        return None


def _video_url(job: Job) -> str | None:
    """Where the page's <video> reads the clip: a time-limited presigned URL of the bucket,
    or the view serving the file from the output directory."""
    if job.state.value != "done":
        return None
    return clip_url(job) or reverse("video", args=[job.id])


def _enqueue(data: dict[str, Any]) -> str:
    # check_on_done: this project imports records.py, so a misspelt task name fails here.
    return enqueue_render(data, on_done=TASK_NAME, check_on_done=True)


def _index(
    request: HttpRequest,
    values: dict[str, str],
    *,
    error: list[tuple[str, str]] | None = None,
) -> HttpResponse:
    models = form_models()
    chosen = next((m for m in models if m.id == values["model"]), models[0])
    low, high = seconds_range(chosen)
    context = {
        "models": [(m, *seconds_range(m)) for m in models],
        "ratios": SEEDANCE_RATIOS,
        "values": values,
        "error": error,
        "seconds_min": low,
        "seconds_max": high,
    }
    return render(request, "renders/index.html", context, status=400 if error else 200)


def _view(job: Job) -> dict[str, Any]:
    record = recorded(job.id)
    if record is not None and not job.is_final:  # it ended after we read it: read it again
        job = get_job(job.id)
    view = status_view(get_engine(), job)
    if record is not None:
        record["recorded_at_text"] = when(record.get("recorded_at"))
    view["record"] = record
    return view


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    """The form."""
    return _index(request, form_values())


@require_POST
def create_from_form(request: HttpRequest) -> HttpResponse:
    """Enqueue from the form and go to the status page."""
    form = request.POST.dict()
    try:
        job_id = _enqueue(request_from_form(form))
    except InvalidRequest as exc:
        return _index(request, form_values(form), error=exc.problems)
    return redirect("status", job_id=job_id)


@csrf_exempt  # a JSON API for scripts; the form above keeps its CSRF token
@require_POST
def create_from_json(request: HttpRequest) -> JsonResponse:
    """``POST /api/renders/`` with ``{"prompt": ...}``: 202 and the job id."""
    try:
        data = json.loads(request.body or b"null")
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return JsonResponse({"error": "send a JSON object with at least 'prompt'"}, status=400)
    try:
        job_id = _enqueue(request_from_json(data))
    except InvalidRequest as exc:
        return JsonResponse(problems_json(exc), status=400)
    return JsonResponse({"job_id": job_id, "status_url": f"/renders/{job_id}"}, status=202)


@require_GET
def status_json(request: HttpRequest, job_id: str) -> JsonResponse:
    """The job's summary, what it waits for and, once final, what on_done recorded."""
    job = _find(job_id)
    if job is None:
        return JsonResponse(NOT_FOUND, status=404)
    return JsonResponse(_view(job))


@require_GET
def status_page(request: HttpRequest, job_id: str) -> HttpResponse:
    """The status page; it says what the job waits for and plays the clip when done."""
    job = _find(job_id)
    if job is None:
        raise Http404("no such render")
    times = [(step, when(epoch)) for step, epoch in sorted(job.times.items(), key=lambda t: t[1])]
    context = {"job": job, "state": job.state.value, "view": _view(job), "times": times,
               "video_url": _video_url(job)}  # fmt: skip
    return render(request, "renders/status.html", context)


@require_GET
def video(request: HttpRequest, job_id: str) -> FileResponse | HttpResponseRedirect:
    """The finished mp4, served from the output directory (or a redirect to the bucket)."""
    job = _find(job_id)
    signed = clip_url(job) if job is not None else None
    if signed is not None:
        return HttpResponseRedirect(signed)
    path = get_settings().output_dir.resolve() / f"{job_id}.mp4"
    if job is None or job.state.value != "done" or not path.is_file():
        raise Http404("not rendered yet")
    return FileResponse(path.open("rb"), content_type="video/mp4")
