"""A batch's contact sheet on the jobs page, over a real redis-server: a tile per line with its
line, prompt and state; a finished clip as a muted video, a still as an image, both through
the page's media endpoint and its sign-in; paged; reloaded only when a tile changes. The
browser (hover plays a clip) is in tests/integration/test_jobs_page_browser.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from starlette.testclient import TestClient

from config.settings import load_settings
from simulator import image_png
from tests.batch_requests import req
from tests.integration.test_jobs_page import MP4, TOKEN, client_for, commands_for, signed_in
from tests.jobs_page_helpers import engine_with_ui_token
from tests.pipeline_helpers import make_engine
from worker.batch import Batches, parse_records
from worker.job.engine import Engine
from worker.job.record import JobState
from worker.web.jobs_page import Credentials, JobsPage
from worker.web.jobs_page.sheet import SHEET_PAGE

PNG = image_png("img_sheet", 64, 36)


@pytest.fixture
def engine(redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """The jobs page's engine (signed into with TOKEN), recording what it sends."""
    for page_engine in engine_with_ui_token(redis_url, tmp_path, monkeypatch):
        yield make_engine(page_engine.settings)


def batch_of(engine: Engine, lines: list[dict[str, object]]) -> tuple[str, list[str]]:
    sub = Batches(engine).submit(parse_records(lines), skip_invalid=True)
    ids = Batches(engine).job_ids(sub.batch_id)  # by item: one per distinct request
    return sub.batch_id, [ids[index] for index in sorted(ids)]


def finish(engine: Engine, job_id: str, name: str, body: bytes) -> None:
    """Mark a job done with its output stored as ``name`` (a clip, or a still as an image
    job will store it), the way the download step records it."""
    path = engine.settings.output_dir / name
    path.write_bytes(body)
    engine.store._change(job_id, states=None, to=JobState.DONE,
                        set={"output_path": str(path), "output_uri": path.as_uri()})  # fmt: skip


def tiles(html: str) -> list[dict[str, str]]:
    found = re.findall(r'<li class="tile" data-line="(\d+)" data-state="([a-z_]+)" '
                       r'data-kind="([a-z]+)"', html)  # fmt: skip
    return [{"line": line, "state": state, "kind": kind} for line, state, kind in found]


def sheet_client(engine: Engine) -> TestClient:
    return signed_in(client_for(JobsPage(Credentials(token=TOKEN), engine=lambda: engine)))


def test_each_line_is_a_tile_clips_as_muted_videos_and_stills_as_images(engine: Engine) -> None:
    batch_id, jobs = batch_of(engine, [
        req("a harbour at dawn, the fishing boats leaving one by one", id="sh010"),
        req("a keyframe of the lighthouse", id="sh020"), req("still waiting", id="sh030"),
        req("a bad ratio", ratio="5:4"),
    ])  # fmt: skip
    finish(engine, jobs[0], f"{jobs[0]}.mp4", MP4)
    finish(engine, jobs[1], "shoot-0002.png", PNG)
    client = sheet_client(engine)
    html = client.get(f"/ui/batches/{batch_id}/sheet").text
    assert tiles(html) == [
        {"line": "1", "state": "done", "kind": "video"},
        {"line": "2", "state": "done", "kind": "image"},
        {"line": "3", "state": "queued", "kind": "none"},
        {"line": "4", "state": "invalid", "kind": "none"},
    ]
    video = re.search(r"<video class=\"clip\" src=\"([^\"]+)\"([^>]*)>", html)
    assert video and video.group(1) == f"/ui/media/{jobs[0]}.mp4"
    assert "muted" in video.group(2) and 'preload="metadata"' in video.group(2)
    still = re.search(r'<img class="still" src="([^"]+)"', html)
    assert still and still.group(1) == f"/ui/media/{jobs[1]}.png"
    assert "<code>sh010</code>" in html and "a harbour at dawn, the fishing boats" in html
    assert '<p class="excerpt err">ratio: ' in html  # a refused line says why
    served = client.get(still.group(1))
    assert served.status_code == 200 and served.content == PNG
    assert served.headers["content-type"] == "image/png"
    assert client.get(f"/ui/media/{jobs[0]}.png").status_code == 404  # a clip has no still
    batch_page = client.get(f"/ui/batches/{batch_id}").text
    assert f'href="/ui/batches/{batch_id}/sheet" id="sheet-link"' in batch_page


def test_the_sheet_and_its_stills_need_a_session(engine: Engine) -> None:
    batch_id, jobs = batch_of(engine, [req("a still")])
    finish(engine, jobs[0], f"{jobs[0]}.png", PNG)
    anonymous = client_for(JobsPage(Credentials(token=TOKEN), engine=lambda: engine))
    assert anonymous.get(f"/ui/batches/{batch_id}/sheet").status_code == 401
    refused = anonymous.get(f"/ui/media/{jobs[0]}.png")
    assert refused.status_code == 401 and PNG not in refused.content


def test_a_still_that_left_the_output_directory_shows_its_state_not_a_broken_image(
    engine: Engine, tmp_path: Path
) -> None:
    batch_id, jobs = batch_of(engine, [req("a still")])
    (tmp_path / "elsewhere.png").write_bytes(PNG)
    engine.store._change(jobs[0], states=None, to=JobState.DONE,
                        set={"output_path": str(tmp_path / "elsewhere.png")})  # fmt: skip
    html = sheet_client(engine).get(f"/ui/batches/{batch_id}/sheet").text
    assert tiles(html) == [{"line": "1", "state": "done", "kind": "none"}]


def test_a_long_batch_is_paged_and_the_sheet_reloads_only_when_a_tile_changes(
    engine: Engine,
) -> None:
    batch_id, jobs = batch_of(engine, [req(f"shot {i}") for i in range(SHEET_PAGE + 2)])
    client = sheet_client(engine)
    first = client.get(f"/ui/batches/{batch_id}/sheet").text
    assert len(tiles(first)) == SHEET_PAGE and 'id="sheet-next"' in first
    second = client.get(f"/ui/batches/{batch_id}/sheet?page=2").text
    assert [t["line"] for t in tiles(second)] == [str(SHEET_PAGE + 1), str(SHEET_PAGE + 2)]
    assert 'id="sheet-prev"' in second and 'id="sheet-next"' not in second
    assert len(tiles(client.get(f"/ui/batches/{batch_id}/sheet?page=x9").text)) == SHEET_PAGE

    def version(page: int) -> str:
        live = client.get(f"/ui/batches/{batch_id}/sheet?page={page}&fragment=1").text
        found = re.search(r'data-version="([0-9a-f]+)"', live)
        assert found and "<li" not in live  # the fragment is the summary, not the grid
        return found.group(1)

    before = (version(1), version(2))
    finish(engine, jobs[-1], f"{jobs[-1]}.mp4", MP4)  # a line on page 2 ends
    assert (version(1), version(2))[0] == before[0] and version(2) != before[1]


def bucket_engine(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """An engine storing in a bucket (never reached: presigning needs no request)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    settings = load_settings(redis_url=redis_url, api_key="sk-test-ui", ui_token=TOKEN,
                             output="s3://clips/renders", s3_endpoint_url="http://127.0.0.1:9",
                             s3_region="us-east-1", s3_addressing_style="path")  # fmt: skip
    return make_engine(settings)


def test_in_a_bucket_tiles_use_presigned_urls_and_the_policy_allows_their_origin(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = bucket_engine(redis_url, monkeypatch)
    batch_id, jobs = batch_of(engine, [req("a still"), req("a clip")])
    for job_id, suffix in zip(jobs, (".png", ".mp4"), strict=True):
        engine.store._change(job_id, states=None, to=JobState.DONE,
                            set={"output_uri": f"s3://clips/renders/{job_id}{suffix}"})  # fmt: skip
    answer = sheet_client(engine).get(f"/ui/batches/{batch_id}/sheet")
    assert [t["kind"] for t in tiles(answer.text)] == ["image", "video"]
    assert f'src="http://127.0.0.1:9/clips/renders/{jobs[0]}.png?' in answer.text
    policy = answer.headers["content-security-policy"]
    assert "img-src 'self' data: http://127.0.0.1:9;" in policy
    assert "media-src 'self' http://127.0.0.1:9" in policy


def test_a_jobs_page_shows_a_stored_still_as_an_image_with_its_download(engine: Engine) -> None:
    _, jobs = batch_of(engine, [req("a still")])
    finish(engine, jobs[0], f"{jobs[0]}.png", PNG)
    client = sheet_client(engine)
    page = client.get(f"/ui/jobs/{jobs[0]}").text
    assert f'<img id="still" src="/ui/media/{jobs[0]}.png"' in page and 'id="clip"' not in page
    saved = re.search(r'id="download-clip" href="([^"]+)"', page)
    assert saved and client.get(saved.group(1).replace("&amp;", "&")).content == PNG


def test_the_sheet_costs_what_the_batch_page_does_plus_one_read_per_tile(
    engine: Engine, redis_client: redis.Redis
) -> None:
    client = sheet_client(engine)
    for lines in (SHEET_PAGE // 2, 5 * SHEET_PAGE):
        batch_id, _ = batch_of(engine, [req(f"shot {lines}-{i}") for i in range(lines)])
        page = commands_for(redis_client, lambda: client.get(f"/ui/batches/{batch_id}?fragment=1"))  # noqa: B023
        sheet = commands_for(redis_client, lambda: client.get(f"/ui/batches/{batch_id}/sheet"))  # noqa: B023
        # The batch's settled view, as its page reads it; then one HMGET per tile shown.
        assert sheet - page == min(lines, SHEET_PAGE), (lines, page, sheet)


SIGNED = "https://provider.test/stills/k1.png?sig=grant-secret-0123456789abcdef"


def storyboard(engine: Engine) -> tuple[str, list[str]]:
    """A still (done, its provider URL recorded), the clip made from it, and a plain clip."""
    still = {"model": "grok-imagine-image", "prompt": "a <b>keyframe</b>", "id": "k1"}
    batch_id, jobs = batch_of(engine, [still, req("from the still", refs=["k1"]), req("plain")])
    finish(engine, jobs[0], f"{jobs[0]}.png", PNG)
    engine.store.keep_image_urls(jobs[0], [SIGNED])
    return batch_id, jobs


def test_a_clips_page_shows_its_still_and_the_stills_page_its_clips(engine: Engine) -> None:
    _, (still, clip, plain) = storyboard(engine)
    client = sheet_client(engine)
    page = client.get(f"/ui/jobs/{clip}").text
    (made_from,) = re.findall(r'<li class="chain-still" data-job="([^"]+)"', page)
    assert made_from == still and f'href="/ui/jobs/{still}"' in page
    assert f'<img class="thumb" src="/ui/media/{still}.png"' in page
    assert "a &lt;b&gt;keyframe&lt;/b&gt;" in page and "<b>keyframe" not in page
    assert "provider.test" not in page and "grant-secret" not in page
    page = client.get(f"/ui/jobs/{still}").text
    assert re.findall(r'<li class="chain-clip" data-job="([^"]+)"', page) == [clip]
    assert 'data-state="waiting_for_input"' in page and f'href="/ui/jobs/{clip}"' in page
    assert "provider.test" not in page and "grant-secret" not in page
    assert 'id="chain"' not in client.get(f"/ui/jobs/{plain}").text


def test_the_sheet_names_the_still_beside_each_clip_made_from_it(engine: Engine) -> None:
    batch_id, (still, clip, _) = storyboard(engine)
    page = sheet_client(engine).get(f"/ui/batches/{batch_id}/sheet").text
    assert [t["kind"] for t in tiles(page)] == ["image", "none", "none"]
    assert re.search(r'data-job="' + clip + r'" id="line-2" data-made-from="1"', page)
    assert 'made from still <a href="#line-1">line 1</a>' in page
    assert 'still for <a href="#line-2">line 2</a>' in page
    assert f'src="/ui/media/{still}.png"' in page and "provider.test" not in page


def test_in_a_bucket_a_waiting_clips_page_shows_its_still_presigned_and_allowed(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = bucket_engine(redis_url, monkeypatch)
    still = {"model": "grok-imagine-image", "prompt": "a keyframe", "id": "k1"}
    _, (still_id, clip) = batch_of(engine, [still, req("from the still", refs=["k1"])])
    engine.store._change(still_id, states=None, to=JobState.DONE,
                         set={"output_uri": f"s3://clips/renders/{still_id}.png"})  # fmt: skip
    engine.store.keep_image_urls(still_id, [SIGNED])
    answer = sheet_client(engine).get(f"/ui/jobs/{clip}")
    thumb = f'<img class="thumb" src="http://127.0.0.1:9/clips/renders/{still_id}.png?'
    assert thumb in answer.text
    assert "provider.test" not in answer.text and "grant-secret" not in answer.text
    assert "img-src 'self' data: http://127.0.0.1:9;" in answer.headers["content-security-policy"]
