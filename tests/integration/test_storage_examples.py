"""The Flask and Django examples play a clip from a bucket through a presigned URL.

A real fleet delivers into moto's S3 server; the Flask app's own ``on_done`` task records
the summary (with the object's URI); both apps' status pages point their <video> at a
time-limited presigned URL that serves the clip without credentials.
"""

from __future__ import annotations

import hashlib
import html
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from simulator import VIDEO_SHA256
from simulator.testing import SimulatorProcess
from tests.fleet import ROOT, Fleet, fleet_env, point_this_process_at, wait_for
from tests.s3_server import Bucket
from worker.infra.redis_server import RedisServer

pytestmark = pytest.mark.integration
RECORDS = ["examples.flask_app.records"]
VIDEO_SRC = re.compile(r'<video [^>]*src="([^"]+)"')


@pytest.fixture
def fleet(
    redis_server: RedisServer, sim: SimulatorProcess, bucket: Bucket, tmp_path: Path
) -> Iterator[Fleet]:
    redis.Redis.from_url(redis_server.url).flushall()
    env = fleet_env(redis_url=redis_server.url, sim_url=sim.url, output_dir=tmp_path / "work")
    env.update(bucket.env())
    (tmp_path / "logs").mkdir()
    fleet = Fleet(env, tmp_path / "logs", concurrency=2, includes=RECORDS)
    with pytest.MonkeyPatch.context() as monkeypatch:
        point_this_process_at(env, monkeypatch)
        fleet.start()
        try:
            yield fleet
        finally:
            fleet.stop()


@pytest.fixture
def django_client() -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.syspath_prepend(str(ROOT / "examples" / "django_project"))
        monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "renders_site.settings")
        import django
        from django.test import Client

        django.setup()
        yield Client()
    for name in [m for m in sys.modules if m.split(".")[0] in ("renders", "renders_site")]:
        del sys.modules[name]


def _plays(page: str) -> bytes:
    """Fetch what the page's <video> element points at, as a browser would."""
    found = VIDEO_SRC.search(page)
    assert found, page
    src = html.unescape(found.group(1))
    assert src.startswith("http://127.0.0.1:") and "X-Amz-Signature=" in src, src
    assert "X-Amz-Expires=3600" in src  # time-limited: RELAYDANCE_S3_PRESIGN_SECONDS
    return httpx.get(src, timeout=10).content


def test_the_examples_play_a_clip_from_the_bucket_through_a_presigned_url(
    fleet: Fleet, bucket: Bucket, django_client: Any
) -> None:
    from examples.flask_app.app import create_app

    flask = create_app().test_client()
    answer = flask.post("/api/renders", json={"prompt": "a paper boat", "seconds": 5})
    assert answer.status_code == 202, answer.json
    job_id = answer.json["job_id"]

    def recorded() -> dict[str, Any] | None:
        status = flask.get(f"/api/renders/{job_id}").json
        return status if status["record"] else None

    status = wait_for(recorded, timeout=60, what="the on_done record")
    uri = f"s3://clips/renders/{job_id}.mp4"
    assert status["state"] == "done" and status["output_uri"] == uri
    assert status["record"]["output_uri"] == uri  # the on_done summary carries the URI
    assert status["record"]["sha256"] == VIDEO_SHA256

    page = flask.get(f"/renders/{job_id}").get_data(as_text=True)
    assert hashlib.sha256(_plays(page)).hexdigest() == VIDEO_SHA256
    moved = flask.get(f"/videos/{job_id}.mp4")
    assert moved.status_code == 302 and "X-Amz-Signature=" in moved.location

    page = django_client.get(f"/renders/{job_id}").content.decode()
    assert hashlib.sha256(_plays(page)).hexdigest() == VIDEO_SHA256
    moved = django_client.get(f"/videos/{job_id}.mp4")
    assert moved.status_code == 302 and "X-Amz-Signature=" in moved["Location"]
    assert bucket.keys() == sorted([f"renders/{job_id}.mp4", f"renders/{job_id}.json"])
