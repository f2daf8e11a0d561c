"""The jobs page without a browser: actions need the CSRF token, and clips are served from
safe paths only, in ranges.

Real redis-server; the app in-process (Starlette's test client).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.jobs_page_helpers import (
    MP4,
    TOKEN,
    Recorder,
    client_for,
    csrf_of,
    engine_with_ui_token,
    new_job,
    signed_in,
)
from worker.job.engine import Engine
from worker.job.record import JobState
from worker.web.jobs_page import Credentials, JobsPage
from worker.web.jobs_page.auth import Session
from worker.web.jobs_page.media import clip_path, parse_range


@pytest.fixture
def engine(redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    yield from engine_with_ui_token(redis_url, tmp_path, monkeypatch)


def test_cancel_needs_the_confirmation_form_csrf_token(engine: Engine) -> None:
    job_id = new_job(engine)
    recorder = Recorder()
    client = signed_in(client_for(JobsPage(Credentials(token=TOKEN), actions=recorder.actions())))
    confirm = client.get(f"/ui/jobs/{job_id}/cancel")
    assert confirm.status_code == 200 and "Yes, cancel this job" in confirm.text
    url = f"/ui/jobs/{job_id}/cancel"
    assert client.post(url, data={}, follow_redirects=False).status_code == 403
    assert client.post(url, data={"csrf": "forged"}, follow_redirects=False).status_code == 403
    other = Credentials(token=TOKEN + "x").csrf_token(Session("bearer", "bearer"))
    assert client.post(url, data={"csrf": other}, follow_redirects=False).status_code == 403
    token = csrf_of(confirm.text)
    cross = client.post(url, data={"csrf": token}, headers={"Origin": "https://evil.test"},
                        follow_redirects=False)  # fmt: skip
    assert cross.status_code == 403
    assert recorder.canceled == []
    done = client.post(url, data={"csrf": token}, follow_redirects=False)
    assert done.status_code == 303 and recorder.canceled == [job_id]


def test_resubmit_is_offered_only_for_an_unknown_submission(engine: Engine) -> None:
    job_id = new_job(engine)
    client = signed_in(client_for(JobsPage(Credentials(token=TOKEN))))
    assert client.get(f"/ui/jobs/{job_id}/resubmit").status_code == 409
    assert "Resubmit" not in client.get(f"/ui/jobs/{job_id}").text
    engine.store._change(job_id, states=None, to=JobState.SUBMIT_UNKNOWN)
    page = client.get(f"/ui/jobs/{job_id}").text
    assert 'id="resubmit"' in page
    assert "may pay twice" in client.get(f"/ui/jobs/{job_id}/resubmit").text


@pytest.mark.parametrize(
    "trick",
    ["../secret", "..%2fsecret", "%2e%2e%2fsecret", "%2e%2e/secret", "/etc/passwd",
     "%2fetc%2fpasswd", "rdj_" + "0" * 32 + "%00", "rdj_%00../secret", "....//secret",
     "rdj_" + "0" * 31 + "/..", "RDJ_" + "A" * 32],
)  # fmt: skip
def test_a_job_id_with_path_tricks_serves_nothing_outside_the_output_directory(
    engine: Engine, trick: str
) -> None:
    out = engine.settings.output_dir
    (out.parent / "secret.mp4").write_bytes(b"SECRET")
    client = signed_in(client_for(JobsPage(Credentials(token=TOKEN))))
    answer = client.get(f"/ui/media/{trick}.mp4")
    assert answer.status_code == 404
    assert b"SECRET" not in answer.content


def test_clip_path_refuses_ids_and_links_that_leave_the_directory(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "secret.mp4").write_bytes(b"SECRET")
    good = "rdj_" + "a" * 32
    (out / f"{good}.mp4").write_bytes(MP4)
    link = "rdj_" + "b" * 32
    (out / f"{link}.mp4").symlink_to(tmp_path / "secret.mp4")
    assert clip_path(out, good) == (out / f"{good}.mp4").resolve()
    assert clip_path(out, link) is None
    for bad in ("../secret", str(tmp_path / "secret"), good + "\0", good + "/../x", ""):
        assert clip_path(out, bad) is None


def test_the_clip_is_served_in_ranges(engine: Engine) -> None:
    job_id = new_job(engine)
    (engine.settings.output_dir / f"{job_id}.mp4").write_bytes(MP4)
    client = signed_in(client_for(JobsPage(Credentials(token=TOKEN))))
    whole = client.get(f"/ui/media/{job_id}.mp4")
    assert whole.status_code == 200 and whole.content == MP4
    assert whole.headers["accept-ranges"] == "bytes"
    part = client.get(f"/ui/media/{job_id}.mp4", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == MP4[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(MP4)}"
    tail = client.get(f"/ui/media/{job_id}.mp4", headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == MP4[-10:]
    past = client.get(f"/ui/media/{job_id}.mp4", headers={"Range": f"bytes={len(MP4)}-"})
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{len(MP4)}"
    assert parse_range("bytes=0-", 10) == (0, 9)
    assert parse_range("bytes=0-1,4-5", 10) is None
