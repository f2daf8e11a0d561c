"""The Flask and Django examples validate exactly as the CLI does, and keep the user's input.

Each framework's own test client drives its app; the job store is the test Redis (no
worker runs: a valid request is only recorded and enqueued).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from tests.fleet import point_this_process_at
from worker.job.engine import get_engine
from worker.render.catalogue import MODELS
from worker.web.integrations.forms import form_models

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NEEDS_MEDIA = sorted(name for name, model in MODELS.items() if model.requires)


class Answer(Protocol):
    status_code: int


@pytest.fixture
def fleet_env(redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    point_this_process_at(
        {"REDIS_URL": redis_url, "RELAYDANCE_API_KEY": "sk-test-examples",
         "RELAYDANCE_OUTPUT_DIR": str(tmp_path / "renders")},
        monkeypatch,
    )  # fmt: skip


class Client:
    """One interface over Flask's and Django's test clients."""

    def __init__(self, name: str, raw: Any) -> None:
        self.name, self.raw = name, raw

    def form(self, data: dict[str, str]) -> tuple[int, str]:
        path = "/renders" if self.name == "flask" else "/renders/"
        answer = self.raw.post(path, data=data)
        return answer.status_code, self._text(answer)

    def post_json(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        path = "/api/renders" if self.name == "flask" else "/api/renders/"
        answer = self.raw.post(path, data=json.dumps(body), content_type="application/json")
        return answer.status_code, json.loads(self._text(answer))

    def get(self, path: str) -> tuple[int, str, str]:
        answer = self.raw.get(path)
        kind = answer.headers.get("Content-Type", "")
        return answer.status_code, kind, self._text(answer)

    @staticmethod
    def _text(answer: Any) -> str:
        data = answer.get_data() if hasattr(answer, "get_data") else answer.content
        return str(data.decode())


@pytest.fixture(scope="module")
def django_client() -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.syspath_prepend(str(EXAMPLES / "django_project"))
        monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "renders_site.settings")
        import django
        from django.test import Client as DjangoClient

        django.setup()
        yield DjangoClient()
    for name in [m for m in sys.modules if m.split(".")[0] in ("renders", "renders_site")]:
        del sys.modules[name]


@pytest.fixture(params=["flask", "django"])
def client(request: pytest.FixtureRequest, fleet_env: None) -> Client:
    if request.param == "flask":
        from examples.flask_app.app import create_app

        app = create_app()
        app.config["TESTING"] = True
        return Client("flask", app.test_client())
    return Client("django", request.getfixturevalue("django_client"))


def _nothing_enqueued() -> bool:
    return get_engine().store.active_count() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": "a kite", "seconds": 0}, "seconds"),  # once turned into a billed 5 s clip
        ({"prompt": "a kite", "seconds": 5, "ratio": "99:1"}, "ratio"),  # once dropped
        ({"prompt": "a kite", "sconds": 5}, "sconds"),  # a misspelt field is not ignored
        ({"prompt": "a kite", "model": ""}, "model"),  # empty is not "the default"
    ],
)
def test_the_json_api_refuses_what_the_cli_refuses_with_400_naming_the_field(
    client: Client, body: dict[str, Any], field: str
) -> None:
    status, answer = client.post_json(body)
    assert status == 400
    assert [p["field"] for p in answer["problems"]] == [field]
    assert all(p["message"] for p in answer["problems"])  # the key the docs show
    assert _nothing_enqueued()


def test_the_form_refuses_bad_input_and_keeps_what_the_user_typed(client: Client) -> None:
    status, page = client.form(
        {"prompt": "my own words", "model": "grok-imagine-video", "seconds": "0", "ratio": "1:1"}
    )
    assert status == 400
    assert "<b>seconds</b>" in page
    assert ">my own words</textarea>" in page
    assert re.search(r'<option value="grok-imagine-video"[^>]*selected>', page)
    assert 'name="seconds" id="seconds" type="number" value="0"' in page
    assert "<option selected>1:1</option>" in page
    assert _nothing_enqueued()


def test_the_form_offers_only_models_it_can_serve_with_each_models_seconds(
    client: Client,
) -> None:
    status, _, page = client.get("/")
    assert status == 200
    offered = re.findall(r'<option value="([^"]+)" data-min="(\d+)" data-max="(\d+)"', page)
    assert {name for name, _, _ in offered} == {m.id for m in form_models()}
    assert not set(NEEDS_MEDIA) & {name for name, _, _ in offered}
    for name, low, high in offered:
        assert (int(low), int(high)) == (MODELS[name].min_seconds, MODELS[name].max_seconds)
    # The seconds field starts with the default model's range (4-15 s), not 1-15.
    assert 'value="5" min="4" max="15"' in page


def test_a_valid_form_is_enqueued_as_typed_with_model_defaults_where_chosen(
    client: Client,
) -> None:
    status, _ = client.form(
        {"prompt": "a kite", "model": "happyhorse-1.0-t2v", "seconds": "7", "ratio": ""}
    )
    assert status in (302, 303)
    [(job_id, _)] = get_engine().store.due(before=float("inf"))
    job = get_engine().store.get(job_id)
    assert job is not None and job.on_done is not None
    assert job.request["model"] == "happyhorse-1.0-t2v" and job.request["seconds"] == 7
    assert job.request["ratio"] is None  # "model default" was chosen


def test_the_json_404s_are_json_as_the_docs_show_and_pages_404(client: Client) -> None:
    prefix = "/api/renders/"
    for job_id in ("rdj_" + "0" * 32, "not-a-job-id"):
        status, kind, body = client.get(prefix + job_id)
        assert status == 404 and kind.startswith("application/json")
        assert json.loads(body) == {"error": "no such render"}
        assert client.get(f"/renders/{job_id}")[0] == 404


def test_the_status_page_says_what_the_job_waits_for_in_human_times(client: Client) -> None:
    status, answer = client.post_json({"prompt": "a kite", "seconds": 5})
    assert status == 202
    code, _, page = client.get(answer["status_url"])
    assert code == 200
    assert '<p class="waiting">queued: waiting for a worker' in page
    assert re.search(r"queued: \d\d:\d\d:\d\d UTC \((now|\d+ s ago)\)", page)
    code, _, body = client.get(f"/api/renders/{answer['job_id']}")
    view = json.loads(body)
    assert view["waiting"]["waiting_for"] == "worker" and view["waiting"]["until_iso"]
    assert view["times_iso"]["queued"].endswith("Z")
