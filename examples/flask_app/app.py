"""The Flask example: a form and a JSON endpoint that enqueue renders, a status page that
plays the finished clip (from the output directory, or through a presigned URL when clips
go to a bucket), and the webhook receiver mounted at ``/hooks``.

Run from the project root: ``flask --app examples.flask_app.app run --port 5000``.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from flask import (
    Flask,
    abort,
    jsonify,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from werkzeug.wrappers import Response

from config.settings import get_settings
from tasks import JobNotFound, clip_url, enqueue_render, get_job
from worker.catalogue import MODELS
from worker.errors import InvalidRequest
from worker.integrations.flask import relaydance_blueprint
from worker.jobs import Job
from worker.logs import RedactingFilter

from .records import TASK_NAME, recorded

__all__ = ["create_app"]

DEFAULT_MODEL = "doubao-seedance-2-0-fast-260128"
_JOB_ID = re.compile(r"rdj_[0-9a-f]{32}")


def _job_or_404(job_id: str) -> Job:
    if not _JOB_ID.fullmatch(job_id):
        abort(404)
    try:
        return get_job(job_id)
    except JobNotFound:
        abort(404)


def _video_url(job: Job) -> str | None:
    """Where the page's <video> reads the clip: a time-limited presigned URL of the bucket,
    or this app's route serving the file from the output directory."""
    if job.state.value != "done":
        return None
    return clip_url(job) or url_for("video", job_id=job.id)


def _enqueue(data: dict[str, Any]) -> str:
    render = {
        "model": data.get("model") or DEFAULT_MODEL,
        "prompt": data.get("prompt", ""),
        "seconds": data.get("seconds") or 5,
    }
    return enqueue_render(render, on_done=TASK_NAME)


def create_app() -> Flask:
    """The example app; the producer side only, the worker does the rendering."""
    app = Flask(__name__)
    # The development server logs each request line, and webhook paths carry tokens.
    server_log = logging.getLogger("werkzeug")
    if not any(isinstance(f, RedactingFilter) for f in server_log.filters):
        server_log.addFilter(RedactingFilter())
    app.register_blueprint(relaydance_blueprint(url_prefix="/hooks"))

    @app.get("/")
    def index() -> str:
        return render_template("index.html", models=sorted(MODELS), default_model=DEFAULT_MODEL)

    @app.post("/renders")
    def create_from_form() -> Response | tuple[str, int]:
        try:
            job_id = _enqueue(dict(request.form))
        except InvalidRequest as exc:
            page = render_template(
                "index.html", models=sorted(MODELS), default_model=DEFAULT_MODEL, error=exc.problems
            )
            return page, 400
        return redirect(url_for("status_page", job_id=job_id), code=303)

    @app.post("/api/renders")
    def create_from_json() -> tuple[Response, int]:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            return jsonify({"error": "send a JSON object with at least 'prompt'"}), 400
        try:
            job_id = _enqueue(data)
        except InvalidRequest as exc:
            problems = [{"field": field, "problem": text} for field, text in exc.problems]
            return jsonify({"error": "invalid render request", "problems": problems}), 400
        status_url = url_for("status_page", job_id=job_id)
        return jsonify({"job_id": job_id, "status_url": status_url}), 202

    @app.get("/api/renders/<job_id>")
    def status_json(job_id: str) -> Response:
        job = _job_or_404(job_id)
        return jsonify({**job.summary(), "record": recorded(job_id)})

    @app.get("/renders/<job_id>")
    def status_page(job_id: str) -> str:
        job = _job_or_404(job_id)
        return render_template(
            "status.html", job=job, record=recorded(job_id), video_url=_video_url(job)
        )

    @app.get("/videos/<job_id>.mp4")
    def video(job_id: str) -> Response:
        job = _job_or_404(job_id)
        if job.state.value != "done":
            abort(404)
        signed = clip_url(job)
        if signed is not None:  # the clip is in a bucket: the browser reads it from there
            return redirect(signed, code=302)
        directory = get_settings().output_dir.resolve()
        return send_from_directory(directory, f"{job_id}.mp4", mimetype="video/mp4")

    return app
