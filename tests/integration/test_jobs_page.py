"""The jobs page without a browser: auth, CSRF, safe clip paths, ranges, bounded Redis work.

Real redis-server; the app in-process (Starlette's test client, Flask's and Django's).
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from starlette.testclient import TestClient

from config.settings import SettingsError, get_settings, load_settings
from worker.job.engine import Engine, get_engine, reset_engine
from worker.job.listing import WINDOW, JobFilter, list_jobs
from worker.job.record import Job, JobState
from worker.render.validation import validate_request
from worker.web.app import create_web_app
from worker.web.jobs_page import Credentials, JobsPage, asgi_app
from worker.web.jobs_page.actions import Actions
from worker.web.jobs_page.auth import Session
from worker.web.jobs_page.media import clip_path, parse_range

TOKEN = "ui-token-for-tests-VZ5Y7j1nWO85nasBorCPhccPVVj2gsak"
MP4 = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40


@pytest.fixture
def engine(redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    for name in ("RELAYDANCE_UI_USER", "RELAYDANCE_UI_PASSWORD", "RELAYDANCE_OUTPUT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("RELAYDANCE_API_KEY", "sk-test-ui")
    monkeypatch.setenv("RELAYDANCE_UI_TOKEN", TOKEN)
    monkeypatch.setenv("RELAYDANCE_OUTPUT_DIR", str(tmp_path / "out"))
    (tmp_path / "out").mkdir()
    get_settings.cache_clear()
    reset_engine()
    yield get_engine()
    get_settings.cache_clear()
    reset_engine()


def new_job(engine: Engine, prompt: str = "a paper boat", *, alias: str = "default") -> str:
    request = validate_request({"model": "doubao-seedance-2-0-fast-260128", "prompt": prompt,
                                "seconds": 5})  # fmt: skip
    return engine.store.create_render(request, alias=alias)


class Recorder:
    """Actions that only record what the page asked for."""

    def __init__(self) -> None:
        self.canceled: list[str] = []

    def actions(self) -> Actions:
        def cancel(job_id: str) -> bool:
            self.canceled.append(job_id)
            return True

        def resubmit(job_id: str) -> Job:
            raise AssertionError("not expected")

        return Actions(cancel=cancel, resubmit=resubmit, clip_url=lambda job: None)


def client_for(page: JobsPage) -> TestClient:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    return TestClient(Starlette(routes=[Mount("/ui", app=asgi_app(page, root="/ui"))]))


def signed_in(client: TestClient) -> TestClient:
    answer = client.post("/ui/login", data={"token": TOKEN, "next": "/ui/jobs"},
                         follow_redirects=False)  # fmt: skip
    assert answer.status_code == 303, answer.text
    return client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found
    return found.group(1)


# Auth ------------------------------------------------------------------------------------


def every_path(job_id: str) -> list[str]:
    return ["/ui/", "/ui/jobs", f"/ui/jobs/{job_id}", f"/ui/jobs/{job_id}/cancel",
            "/ui/batches", "/ui/batches/rdb_x", "/ui/batches/rdb_x/report.csv", "/ui/keys",
            f"/ui/media/{job_id}.mp4", "/ui/static/app.css", "/ui/static/app.js",
            "/ui/jobs?fragment=1"]  # fmt: skip


def test_every_page_and_asset_refuses_without_credentials(engine: Engine) -> None:
    job_id = new_job(engine)
    (engine.settings.output_dir / f"{job_id}.mp4").write_bytes(MP4)
    client = TestClient(create_web_app())
    for path in every_path(job_id):
        answer = client.get(path)
        assert answer.status_code == 401, path
        assert "boat" not in answer.text and "ftyp" not in answer.text, path
    for bad in ("Bearer wrong", "Basic " + base64.b64encode(b"u:p").decode()):
        assert client.get("/ui/jobs", headers={"Authorization": bad}).status_code == 401
    assert client.get("/ui/jobs", cookies={"rd_ui": "1.2.forged"}).status_code == 401
    assert client.get("/ui/jobs", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_without_configured_credentials_or_the_opt_in_the_page_refuses_everything(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RELAYDANCE_UI_TOKEN")
    get_settings.cache_clear()
    client = TestClient(create_web_app(), client=("127.0.0.1", 50000))
    answer = client.get("/ui/jobs", headers={"Host": "127.0.0.1:8000"})
    assert answer.status_code == 403
    assert "RELAYDANCE_UI_TOKEN" in answer.text


def test_the_loopback_opening_needs_a_local_client_a_local_host_name_and_no_proxy() -> None:
    creds = Credentials(open_on_loopback=True)
    assert not creds.local_refusal(client="127.0.0.1", host="127.0.0.1:8000", headers={})
    assert not creds.local_refusal(client="::1", host="[::1]:8000", headers={})
    # DNS rebinding: a public name resolving to 127.0.0.1 is refused.
    assert creds.local_refusal(client="127.0.0.1", host="evil.test", headers={})
    assert creds.local_refusal(client="10.0.0.5", host="localhost", headers={})
    assert "x-forwarded-for" in creds.local_refusal(
        client="127.0.0.1", host="localhost", headers={"x-forwarded-for": "203.0.113.9"}
    )
    configured = Credentials(token=TOKEN, open_on_loopback=True)
    assert configured.local_refusal(client="127.0.0.1", host="localhost", headers={})


def test_basic_auth_works_and_a_changed_password_ends_sessions() -> None:
    password = "Zq8-Rt5wXy2KpL9mNb4VcH7jDf3GsA6e"
    creds = Credentials(user="ops", password=password)
    attempt = creds.header_attempt("Basic " + base64.b64encode(f"ops:{password}".encode()).decode())
    assert attempt is not None and attempt.ok and attempt.account == "user"
    session = Session(attempt.kind, attempt.ident)
    token = creds.csrf_token(session)
    assert creds.csrf_ok(session, token)
    assert not Credentials(user="ops", password=password + "x").csrf_ok(session, token)
    assert creds.fingerprint != Credentials(user="ops", password=password + "x").fingerprint
    wrong = creds.header_attempt("Basic " + base64.b64encode(b"ops:nope").decode())
    assert wrong is not None and not wrong.ok


def test_ui_user_without_a_password_is_refused_by_the_settings(redis_url: str) -> None:
    with pytest.raises(SettingsError, match="RELAYDANCE_UI_PASSWORD"):
        load_settings(redis_url=redis_url, ui_user="ops")


# CSRF --------------------------------------------------------------------------------------


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


# The clip ------------------------------------------------------------------------------------


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


# Bounded Redis work ----------------------------------------------------------------------------


def many_jobs(engine: Engine, count: int, *, every: int = 100) -> list[str]:
    """``count`` jobs written as the store writes them; every ``every``-th is done."""
    base = validate_request({"model": "doubao-seedance-2-0-fast-260128", "prompt": "x",
                             "seconds": 5}).model_dump(mode="json")  # fmt: skip
    ids, now = [], time.time() - count
    pipe = engine.redis.pipeline(transaction=False)
    for i in range(count):
        job_id = f"rdj_{i:032x}"
        request = {**base, "prompt": f"shot {i} of the harbour"}
        fields = engine.store.new_fields(request=request, alias="default", cost=0.5,
                                         now=now + i, due=now + i + 60)  # fmt: skip
        if i % every == 0:
            fields["state"] = "done"
        engine.store.queue_create(pipe, job_id, fields, due=now + i + 60)
        ids.append(job_id)
    pipe.execute()
    return ids


def commands_for(client: redis.Redis, call: Any) -> int:
    client.config_resetstat()
    call()
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k not in ("cmdstat_info",))


def test_the_jobs_page_over_ten_thousand_jobs_costs_bounded_redis_commands(
    engine: Engine, redis_client: redis.Redis
) -> None:
    ids = many_jobs(engine, 10_000)
    client = TestClient(create_web_app())
    headers = {"Authorization": f"Bearer {TOKEN}"}
    first = commands_for(redis_client, lambda: client.get("/ui/jobs", headers=headers))
    assert first <= 60, first  # ZCARD, ZREVRANGE, 50 HMGET, the alias list
    page = list_jobs(engine.redis, engine.store, JobFilter())
    assert [r.id for r in page.rows] == ids[::-1][:50]
    later = list_jobs(engine.redis, engine.store, JobFilter(after=ids[5000]))
    assert later.rows[0].id == ids[4999]
    deep = commands_for(redis_client, lambda: client.get(f"/ui/jobs?after={ids[5000]}",
                                                         headers=headers))  # fmt: skip
    assert deep <= 62, deep
    # A filter the indexes do not answer reads at most a window of records, and says so.
    state = commands_for(redis_client, lambda: client.get("/ui/jobs?state=done",
                                                          headers=headers))  # fmt: skip
    assert state <= WINDOW + 30, state
    found = list_jobs(engine.redis, engine.store, JobFilter(q="shot 9999 of"))
    assert [r.id for r in found.rows] == [ids[9999]]
    by_id = commands_for(redis_client, lambda: client.get(f"/ui/jobs?q={ids[3]}",
                                                          headers=headers))  # fmt: skip
    assert by_id <= 10, by_id


def test_expired_records_are_skipped_and_dropped_from_the_index(engine: Engine) -> None:
    ids = [new_job(engine, f"clip {i}") for i in range(5)]
    engine.redis.delete(engine.store.key(ids[2]))
    page = list_jobs(engine.redis, engine.store, JobFilter())
    assert [r.id for r in page.rows] == ids[::-1][:2] + ids[::-1][3:]
    assert engine.redis.zscore(engine.store.created_key, ids[2]) is None


def test_filters_by_alias_model_and_batch_use_their_own_index(engine: Engine) -> None:
    a = new_job(engine, "one", alias="default")
    b = new_job(engine, "two", alias="tenant-a")
    assert [
        r.id for r in list_jobs(engine.redis, engine.store, JobFilter(alias="tenant-a")).rows
    ] == [b]
    both = list_jobs(engine.redis, engine.store, JobFilter(model="doubao-seedance-2-0-fast-260128"))
    assert [r.id for r in both.rows] == [b, a]
    assert engine.redis.ttl(engine.store.created_index("alias", "tenant-a")) > 0


def test_money_is_shown_to_the_cent_unless_a_cent_would_hide_it() -> None:
    from worker.web.jobs_page.render import money

    assert [money(v) for v in (0.7, 8.4, 1234.5, 0.0035, 1.2345, None)] == [
        "$0.70", "$8.40", "$1,234.50", "$0.0035", "$1.2345", "-",
    ]  # fmt: skip


# Batches -------------------------------------------------------------------------------------


def test_the_batch_page_shows_invalid_skipped_canceled_and_unknown_lines_apart(
    engine: Engine,
) -> None:
    from tests.batch_requests import req
    from tests.pipeline_helpers import make_engine
    from worker.batch import Batches, parse_records

    fake = make_engine(engine.settings)
    parsed = parse_records([req("a"), req("b", seconds=99), req("c"), req("d", ratio="5:4"),
                            req("e"), req("f")])  # fmt: skip
    sub = Batches(fake).submit(parsed, skip_invalid=True, budget=3 * 0.7)
    jobs = Batches(fake).job_ids(sub.batch_id)
    fake.store.cancel(jobs[1])
    fake.store._change(jobs[2], states=None, to=JobState.SUBMIT_UNKNOWN)
    client = signed_in(client_for(JobsPage(Credentials(token=TOKEN), engine=lambda: fake)))
    page = client.get(f"/ui/batches/{sub.batch_id}").text
    legend = dict(re.findall(r'data-group="([a-z]+)">(\d+)<', page))
    assert legend == {"done": "0", "running": "0", "waiting": "1", "unknown": "1",
                      "failed": "0", "canceled": "1", "skipped": "1", "invalid": "2"}  # fmt: skip
    assert "skipped (budget)" in page
    for group in ("canceled", "skipped", "invalid", "unknown"):
        assert f'class="seg-{group}"' in page, group
    css = client.get("/ui/static/app.css").text
    assert ".seg-skipped" in css and ".seg-invalid" in css


def test_a_named_clip_and_its_manifest_are_served_from_where_the_record_says(
    engine: Engine, tmp_path: Path
) -> None:
    job_id = new_job(engine)
    shoot = engine.settings.output_dir / "shoot"
    shoot.mkdir()
    (shoot / "0001-a-paper-boat.mp4").write_bytes(MP4)
    (shoot / "0001-a-paper-boat.json").write_text(json.dumps({"job_id": job_id}))
    engine.store._change(job_id, states=None, to=JobState.DONE,
                        set={"output_path": str(shoot / "0001-a-paper-boat.mp4")})  # fmt: skip
    client = signed_in(client_for(JobsPage(Credentials(token=TOKEN))))
    assert client.get(f"/ui/media/{job_id}.mp4").content == MP4
    manifest = client.get(f"/ui/media/{job_id}.json")
    assert manifest.status_code == 200 and manifest.json() == {"job_id": job_id}
    saved = client.get(f"/ui/media/{job_id}.mp4?download=1")
    assert 'filename="0001-a-paper-boat.mp4"' in saved.headers["content-disposition"]
    # A record naming a file outside the output directory serves nothing.
    (tmp_path / "secret.mp4").write_bytes(b"SECRET")
    engine.redis.hset(engine.store.key(job_id), "output_path", str(tmp_path / "secret.mp4"))
    outside = client.get(f"/ui/media/{job_id}.mp4")
    assert outside.status_code == 404 and b"SECRET" not in outside.content


def test_the_job_page_opens_with_the_prompt_and_links_to_save_the_clip_and_manifest(
    engine: Engine,
) -> None:
    job_id = new_job(engine, "A paper boat <drifts> down a rain-soaked street")
    client = signed_in(client_for(JobsPage(Credentials(token=TOKEN))))
    waiting = client.get(f"/ui/jobs/{job_id}").text
    prompt = "A paper boat &lt;drifts&gt; down a rain-soaked street"
    assert f'<blockquote class="prompt" id="prompt">{prompt}</blockquote>' in waiting
    assert waiting.index('id="prompt"') < waiting.index('id="live"')  # at the top
    assert "download-clip" not in waiting  # nothing to save yet
    (engine.settings.output_dir / f"{job_id}.mp4").write_bytes(MP4)
    (engine.settings.output_dir / f"{job_id}.json").write_text(json.dumps({"job_id": job_id}))
    engine.store._change(job_id, states=None, to=JobState.DONE, set={
        "output_path": str(engine.settings.output_dir / f"{job_id}.mp4")})  # fmt: skip
    page = client.get(f"/ui/jobs/{job_id}").text
    clip = re.search(r'id="download-clip" href="([^"]+)"', page)
    manifest = re.search(r'id="download-manifest" href="([^"]+)"', page)
    assert clip and manifest
    saved = client.get(clip.group(1).replace("&amp;", "&"))
    assert saved.content == MP4
    assert saved.headers["content-disposition"].startswith(f'attachment; filename="{job_id}.mp4"')
    assert client.get(manifest.group(1).replace("&amp;", "&")).json() == {"job_id": job_id}
