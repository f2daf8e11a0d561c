"""Views: enqueue a render (form or JSON), show its status, serve the finished clip (from
the output directory, or through a presigned URL when clips go to a bucket)."""

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
from tasks import JobNotFound, clip_url, enqueue_render, get_job
from worker.catalogue import MODELS
from worker.errors import InvalidRequest
from worker.jobs import Job

from .records import TASK_NAME, recorded

DEFAULT_MODEL = "doubao-seedance-2-0-fast-260128"
_JOB_ID = re.compile(r"rdj_[0-9a-f]{32}")


def _job_or_404(job_id: str) -> Job:
    if not _JOB_ID.fullmatch(job_id):
        raise Http404("no such render")
    try:
        return get_job(job_id)
    except JobNotFound:
        raise Http404("no such render") from None


def _video_url(job: Job) -> str | None:
    """Where the page's <video> reads the clip: a time-limited presigned URL of the bucket,
    or the view serving the file from the output directory."""
    if job.state.value != "done":
        return None
    return clip_url(job) or reverse("video", args=[job.id])


def _enqueue(data: dict[str, Any]) -> str:
    render_request = {
        "model": data.get("model") or DEFAULT_MODEL,
        "prompt": data.get("prompt", ""),
        "seconds": data.get("seconds") or 5,
    }
    return enqueue_render(render_request, on_done=TASK_NAME)


def _index(request: HttpRequest, *, error: list[tuple[str, str]] | None = None) -> HttpResponse:
    context = {"models": sorted(MODELS), "default_model": DEFAULT_MODEL, "error": error}
    return render(request, "renders/index.html", context, status=400 if error else 200)


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    """The form."""
    return _index(request)


@require_POST
def create_from_form(request: HttpRequest) -> HttpResponse:
    """Enqueue from the form and go to the status page."""
    try:
        job_id = _enqueue(request.POST.dict())
    except InvalidRequest as exc:
        return _index(request, error=exc.problems)
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
        job_id = _enqueue(data)
    except InvalidRequest as exc:
        problems = [{"field": field, "problem": text} for field, text in exc.problems]
        return JsonResponse({"error": "invalid render request", "problems": problems}, status=400)
    return JsonResponse({"job_id": job_id, "status_url": f"/renders/{job_id}"}, status=202)


@require_GET
def status_json(request: HttpRequest, job_id: str) -> JsonResponse:
    """The job's summary and, once done, what the on_done task recorded."""
    job = _job_or_404(job_id)
    return JsonResponse({**job.summary(), "record": recorded(job_id)})


@require_GET
def status_page(request: HttpRequest, job_id: str) -> HttpResponse:
    """The status page; it plays the clip when the job is done."""
    job = _job_or_404(job_id)
    context = {"job": job, "state": job.state.value, "record": recorded(job_id),
               "video_url": _video_url(job)}  # fmt: skip
    return render(request, "renders/status.html", context)


@require_GET
def video(request: HttpRequest, job_id: str) -> FileResponse | HttpResponseRedirect:
    """The finished mp4, served from the output directory (or a redirect to the bucket)."""
    job = _job_or_404(job_id)
    signed = clip_url(job)
    if signed is not None:
        return HttpResponseRedirect(signed)
    path = get_settings().output_dir.resolve() / f"{job_id}.mp4"
    if job.state.value != "done" or not path.is_file():
        raise Http404("not rendered yet")
    return FileResponse(path.open("rb"), content_type="video/mp4")
