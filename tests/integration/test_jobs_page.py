"""The jobs page without a browser: auth, bounded Redis work, batches, named clips and manifests.

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
from tests.jobs_page_helpers import MP4, TOKEN, client_for, engine_with_ui_token, new_job, signed_in
from worker.job.engine import Engine
from worker.job.listing import WINDOW, JobFilter, list_jobs
from worker.job.record import JobState
from worker.render.validation import validate_request
from worker.web.app import create_web_app
from worker.web.jobs_page import Credentials, JobsPage
from worker.web.jobs_page.auth import Session


@pytest.fixture
def engine(redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    yield from engine_with_ui_token(redis_url, tmp_path, monkeypatch)


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
