"""The jobs page mounted in a Flask app and a Django project: the same page, the same rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.integration.test_jobs_page import engine as engine  # the fixture, found by its name
from tests.jobs_page_helpers import TOKEN, csrf_of, new_job
from worker.job.engine import Engine
from worker.job.record import JobState


def test_flask_mount_refuses_without_credentials_and_serves_with_them(engine: Engine) -> None:
    from flask import Flask

    from worker.web.integrations.flask_ui import jobs_page_blueprint

    job_id = new_job(engine, "flask boat")
    app = Flask(__name__)
    app.register_blueprint(jobs_page_blueprint("/ops"))
    client = app.test_client()
    assert client.get("/ops/jobs").status_code == 401
    answer = client.get("/ops/jobs", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200 and job_id in answer.text
    assert f'href="/ops/jobs/{job_id}"' in answer.text


def test_django_mount_refuses_without_credentials_and_serves_with_them(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The example project's settings, as the other Django tests use (one Django per process).
    monkeypatch.syspath_prepend(
        str(Path(__file__).resolve().parents[2] / "examples" / "django_project")
    )
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "renders_site.settings")
    import django
    from django.test import Client
    from django.test.utils import override_settings

    django.setup()
    with override_settings(ROOT_URLCONF=__name__, ALLOWED_HOSTS=["testserver"]):
        _django_checks(engine, Client())


def _django_checks(engine: Engine, client: Any) -> None:
    job_id = new_job(engine, "django boat")
    assert client.get("/ops/jobs").status_code == 401
    answer = client.get("/ops/jobs", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert answer.status_code == 200 and job_id in answer.content.decode()
    page = client.get(f"/ops/jobs/{job_id}/cancel", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    token = csrf_of(page.content.decode())
    form = "application/x-www-form-urlencoded"  # what the page's form posts
    forged = client.post(f"/ops/jobs/{job_id}/cancel", urlencode({"csrf": "no"}),
                         content_type=form, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")  # fmt: skip
    assert forged.status_code == 403
    # The page's own token passes, and Django's CSRF middleware does not stand in the way.
    done = client.post(f"/ops/jobs/{job_id}/cancel", urlencode({"csrf": token}),
                       content_type=form, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")  # fmt: skip
    assert done.status_code == 303
    job = engine.store.get(job_id)
    assert job is not None and job.state is JobState.CANCELED


def _django_urls() -> list[Any]:
    from django.urls import include, path

    return [path("ops/", include("worker.web.integrations.django_ui"))]


def __getattr__(name: str) -> Any:  # Django reads urlpatterns from this module lazily
    if name == "urlpatterns":
        return _django_urls()
    raise AttributeError(name)
