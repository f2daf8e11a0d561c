"""The Flask example: a form and a JSON endpoint that enqueue renders, a status page that
says what the job waits for and plays the finished clip (from the output directory, or
through a presigned URL when clips go to a bucket), and the webhook receiver mounted at
``/hooks``.

Run from the project root: ``flask --app examples.flask_app.app run --port 5000``.

Requests are validated exactly as the CLI validates them (``worker.web.integrations.forms``):
nothing is defaulted, dropped or repaired, and the form keeps the user's input on error.
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
from worker.api import JobNotFound, clip_url, enqueue_render, get_job
from worker.cli.status_view import status_view
from worker.errors import InvalidRequest
from worker.infra.logs import RedactingFilter
from worker.job.engine import get_engine
from worker.job.record import Job
from worker.render.catalogue import SEEDANCE_RATIOS
from worker.web.integrations.flask import relaydance_blueprint
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

__all__ = ["create_app"]

_JOB_ID = re.compile(r"rdj_[0-9a-f]{32}")
NOT_FOUND = {"error": "no such render"}  # docs/flask.md


def _find(job_id: str) -> Job | None:
    if not _JOB_ID.fullmatch(job_id):
        return None
    try:
        return get_job(job_id)
    except JobNotFound:
        return None


def _video_url(job: Job) -> str | None:
    """Where the page's <video> reads the clip: a time-limited presigned URL of the bucket,
    or this app's route serving the file from the output directory."""
    if job.state.value != "done":
        return None
    return clip_url(job) or url_for("video", job_id=job.id)


def _enqueue(data: dict[str, Any]) -> str:
    # check_on_done: this app imports records.py, so a misspelt task name fails here.
    return enqueue_render(data, on_done=TASK_NAME, check_on_done=True)


def _form_page(values: dict[str, str], error: list[tuple[str, str]] | None = None) -> str:
    models = form_models()
    chosen = next((m for m in models if m.id == values["model"]), models[0])
    low, high = seconds_range(chosen)
    return render_template(
        "index.html",
        models=[(m, *seconds_range(m)) for m in models],
        ratios=SEEDANCE_RATIOS,
        values=values,
        error=error,
        seconds_min=low,
        seconds_max=high,
    )


def _view(job: Job) -> dict[str, Any]:
    record = recorded(job.id)
    if record is not None and not job.is_final:  # it ended after we read it: read it again
        job = get_job(job.id)
    view = status_view(get_engine(), job)
    if record is not None:
        record["recorded_at_text"] = when(record.get("recorded_at"))
    view["record"] = record
    return view


def create_app() -> Flask:
    """The example app; the producer side only, the worker does the rendering."""
    app = Flask(__name__)
    # The development server logs each request line, and webhook paths carry tokens.
    server_log = logging.getLogger("werkzeug")
    if not any(isinstance(f, RedactingFilter) for f in server_log.filters):
        server_log.addFilter(RedactingFilter())
    app.register_blueprint(relaydance_blueprint(url_prefix="/hooks"))
    _add_enqueue_routes(app)
    _add_status_routes(app)
    return app


def _add_enqueue_routes(app: Flask) -> None:
    """The form and the JSON endpoint that enqueue a render."""

    @app.get("/")
    def index() -> str:
        return _form_page(form_values())

    @app.post("/renders")
    def create_from_form() -> Response | tuple[str, int]:
        try:
            job_id = _enqueue(request_from_form(request.form.to_dict()))
        except InvalidRequest as exc:
            return _form_page(form_values(request.form.to_dict()), exc.problems), 400
        return redirect(url_for("status_page", job_id=job_id), code=303)

    @app.post("/api/renders")
    def create_from_json() -> tuple[Response, int]:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            return jsonify({"error": "send a JSON object with at least 'prompt'"}), 400
        try:
            job_id = _enqueue(request_from_json(data))
        except InvalidRequest as exc:
            return jsonify(problems_json(exc)), 400
        status_url = url_for("status_page", job_id=job_id)
        return jsonify({"job_id": job_id, "status_url": status_url}), 202


def _add_status_routes(app: Flask) -> None:
    """A job's status as JSON and as a page, and its finished clip."""

    @app.get("/api/renders/<job_id>")
    def status_json(job_id: str) -> tuple[Response, int]:
        job = _find(job_id)
        if job is None:
            return jsonify(NOT_FOUND), 404
        return jsonify(_view(job)), 200

    @app.get("/renders/<job_id>")
    def status_page(job_id: str) -> str:
        job = _find(job_id)
        if job is None:
            abort(404)
        return render_template(
            "status.html", job=job, view=_view(job), when=when, video_url=_video_url(job)
        )

    @app.get("/videos/<job_id>.mp4")
    def video(job_id: str) -> Response:
        job = _find(job_id)
        if job is None or job.state.value != "done":
            abort(404)
        signed = clip_url(job)
        if signed is not None:  # the clip is in a bucket: the browser reads it from there
            return redirect(signed, code=302)
        directory = get_settings().output_dir.resolve()
        return send_from_directory(directory, f"{job_id}.mp4", mimetype="video/mp4")
