"""The local RelayDance simulator behaves like the provider pages say, faults included.

Every test here drives the app in-process with a fake clock (no sleeping, no socket). What
only a real process shows (real HTTP, webhooks posted to a real receiver, dropped and
trickled replies) is in tests/integration/test_simulator_process.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

import simulator.api
from simulator import VIDEO_SHA256, SimConfig, video_bytes
from simulator.cli import config_from_options, simulate
from simulator.testing import InProcessSimulator
from tests.conftest import FakeClock
from tests.seed_bodies import SEED_001_CONTENT, SEED_001_SUBMIT, SEED_004_CURL
from tests.simulator_requests import BASIC, KEY, SUBMIT, fp, with_changes

Client = httpx.AsyncClient
OTHER_KEY = "sk-other-key-0002"


def image(url: str = "https://example.com/a.jpg", role: str = "reference_image") -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}, "role": role}


def video(url: str = "https://example.com/a.mp4") -> dict[str, Any]:
    return {"type": "video_url", "video_url": {"url": url}, "role": "reference_video"}


def audio(url: str = "https://example.com/a.mp3") -> dict[str, Any]:
    return {"type": "audio_url", "audio_url": {"url": url}, "role": "reference_audio"}


@pytest.fixture
def client(make_client: Callable[..., Client]) -> Client:
    return make_client()


async def submit(client: Client, body: Any = None, *, idem: str | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": idem} if idem else {}
    return await client.post(SUBMIT, json=BASIC if body is None else body, headers=headers)


pytestmark = pytest.mark.anyio

# Submit, poll, download -----------------------------------------------------------------


async def test_submit_answers_a_task_id_with_status_submitted(client: Client) -> None:
    response = await submit(client)
    assert response.status_code == 200
    body = response.json()
    assert body["task_id"].startswith("task_")
    assert body["status"] == "submitted"


async def test_a_task_goes_submitted_running_succeeded_as_its_generation_time_passes(
    client: Client, clock: FakeClock
) -> None:
    task_id = (await submit(client)).json()["task_id"]
    seen = []
    for _ in range(4):
        task = (await client.get(f"{SUBMIT}/{task_id}")).json()
        seen.append((task["status"], task["url"]))
        clock.advance(3.5)
    assert [s for s, _ in seen] == ["submitted", "running", "running", "succeeded"]
    assert all(url is None for _, url in seen[:3])
    assert seen[3][1].startswith("http://sim.test/_files/videos/")
    assert task["format"] == "mp4"
    assert task["metadata"] == {"ratio": "16:9", "resolution": "720p"}


async def test_the_succeeded_url_serves_the_published_mp4(client: Client, clock: FakeClock) -> None:
    task_id = (await submit(client)).json()["task_id"]
    clock.advance(11)
    url = (await client.get(f"{SUBMIT}/{task_id}")).json()["url"]
    response = await client.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/mp4"
    assert response.content[4:8] == b"ftyp"
    assert hashlib.sha256(response.content).hexdigest() == VIDEO_SHA256
    assert response.content == video_bytes()
    assert (await client.get("/_sim/stats")).json()["downloads"] == 1


def test_the_mp4_is_one_valid_movie_with_an_h264_track() -> None:
    data = video_bytes()
    boxes = []
    offset = 0
    while offset < len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        boxes.append(data[offset + 4 : offset + 8])
        offset += size
    assert offset == len(data)
    assert boxes == [b"ftyp", b"moov", b"mdat"]
    assert b"avc1" in data
    assert b"avcC" in data


async def test_video_bytes_pads_the_mp4_to_the_requested_size(
    make_client: Callable[..., Client], clock: FakeClock
) -> None:
    client = make_client(video_bytes=3_000_000)
    task_id = (await submit(client)).json()["task_id"]
    clock.advance(11)
    response = await client.get((await client.get(f"{SUBMIT}/{task_id}")).json()["url"])
    small = video_bytes()
    assert len(response.content) == 3_000_000
    assert response.headers["content-length"] == "3000000"
    assert response.content[4:8] == b"ftyp"
    # Only the mdat size field differs from the small movie; the rest is zero padding.
    mdat = small.index(b"mdat") - 4
    assert response.content[:mdat] == small[:mdat]
    assert int.from_bytes(response.content[mdat : mdat + 4], "big") == 3_000_000 - mdat
    assert response.content[mdat + 4 : len(small)] == small[mdat + 4 :]
    assert response.content[len(small) :].count(0) == 3_000_000 - len(small)


async def test_failure_rate_one_ends_every_task_failed_with_an_error(
    make_client: Callable[..., Client], clock: FakeClock
) -> None:
    client = make_client(failure_rate=1.0)
    ids = [(await submit(client)).json()["task_id"] for _ in range(3)]
    clock.advance(11)
    for task_id in ids:
        task = (await client.get(f"{SUBMIT}/{task_id}")).json()
        assert task["status"] == "failed"
        assert task["url"] is None
        assert task["error"]["message"]


async def test_generation_times_vary_within_the_jitter(
    make_client: Callable[..., Client], clock: FakeClock
) -> None:
    client = make_client(gen_time_mean=10.0, gen_time_jitter=0.5)
    ids = [(await submit(client)).json()["task_id"] for _ in range(20)]
    ready = [(await client.get(f"/_sim/tasks/{t}")).json()["ready_at"] - clock.now for t in ids]
    assert all(5.0 <= r <= 15.0 for r in ready)
    assert len({round(r, 6) for r in ready}) > 1


async def test_the_same_seed_gives_the_same_task_ids(make_client: Callable[..., Client]) -> None:
    first = [(await submit(make_client(seed=42))).json()["task_id"] for _ in range(1)]
    second = [(await submit(make_client(seed=42))).json()["task_id"] for _ in range(1)]
    third = [(await submit(make_client(seed=43))).json()["task_id"] for _ in range(1)]
    assert first == second
    assert first != third


# Authentication and ownership -----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", SUBMIT),
        ("GET", f"{SUBMIT}/task_x"),
        ("POST", "/v1/files"),
        ("POST", "/v1/images/generations"),
    ],
)
@pytest.mark.parametrize("header", [None, "Bearer ", "Basic abc", "sk-no-scheme"])
async def test_v1_refuses_requests_without_a_bearer_key_with_401_json(
    make_client: Callable[..., Client], method: str, path: str, header: str | None
) -> None:
    client = make_client(key=None)
    headers = {"Authorization": header} if header is not None else {}
    response = await client.request(method, path, json=BASIC, headers=headers)
    assert response.status_code == 401
    assert "API key" in response.json()["error"]["message"]


async def test_required_key_prefix_refuses_other_keys(make_client: Callable[..., Client]) -> None:
    client = make_client(key="pk-wrong", required_key_prefix="sk-")
    assert (await submit(client)).status_code == 401
    client.headers["Authorization"] = f"Bearer {KEY}"
    assert (await submit(client)).status_code == 200


async def test_a_task_is_not_found_for_another_key(client: Client) -> None:
    task_id = (await submit(client)).json()["task_id"]
    other = {"Authorization": f"Bearer {OTHER_KEY}"}
    response = await client.get(f"{SUBMIT}/{task_id}", headers=other)
    assert response.status_code == 404
    assert (await client.get(f"{SUBMIT}/{task_id}")).status_code == 200
    assert (await client.get(f"{SUBMIT}/task_doesnotexist")).status_code == 404


# Validation: each refusal -------------------------------------------------------------


def fast(content: list[Any], prompt: str = "a scene") -> dict[str, Any]:
    return {
        "model": "doubao-seedance-2-0-1080p",
        "prompt": prompt,
        "seconds": "5",
        "metadata": {"content": content},
    }


REFUSALS: list[tuple[str, Any, str]] = [
    ("not an object", ["model"], "body"),
    ("model missing", with_changes(model=...), "model"),
    ("model empty", with_changes(model=""), "model"),
    ("model unknown", with_changes(model="sora-9"), "model"),
    ("prompt missing", with_changes(prompt=...), "prompt"),
    ("prompt empty", with_changes(prompt="   "), "prompt"),
    ("prompt too long", with_changes(prompt="x" * 4001), "prompt"),
    ("seconds a number", with_changes(seconds=5), "seconds"),
    ("seconds not digits", with_changes(seconds="5.5"), "seconds"),
    ("seconds below range", with_changes(seconds="3"), "seconds"),
    ("seconds above range", with_changes(seconds="16"), "seconds"),
    ("ratio not offered", with_changes(metadata__ratio="2:1"), "metadata.ratio"),
    ("resolution not offered", with_changes(metadata__resolution="1080p"), "metadata.resolution"),
    (
        "audio on a model without it",
        {**SEED_004_CURL, "metadata": {**SEED_004_CURL["metadata"], "generate_audio": True}},
        "metadata.generate_audio",
    ),
    ("audio not a bool", with_changes(metadata__generate_audio="yes"), "metadata.generate_audio"),
    ("callback_url at the top", with_changes(callback_url="http://127.0.0.1/x"), "callback_url"),
    ("callback_url not a url", with_changes(metadata__callback_url="hook"), "callback_url"),
    ("metadata not an object", with_changes(metadata=[]), "metadata"),
    ("content not a list", with_changes(metadata__content={}), "metadata.content"),
    ("entry not an object", fast(["https://example.com/a.jpg"]), "content[0]"),
    ("unknown type", fast([{"type": "text", "text": "hi"}]), "content[0].type"),
    (
        "payload field missing",
        fast([{"type": "image_url", "url": "https://e.com/a.jpg", "role": "reference_image"}]),
        "content[0].image_url",
    ),
    (
        "payload of the wrong type",
        fast([{"type": "image_url", "video_url": {"url": "https://e.com/a.jpg"}}]),
        "content[0].image_url",
    ),
    ("payload url not a url", fast([image(url="portrait.jpg")]), "content[0].image_url"),
    (
        "role missing",
        fast([{"type": "image_url", "image_url": {"url": "https://e.com/a"}}]),
        "content[0].role",
    ),
    ("role of another type", fast([image(role="reference_video")]), "content[0].role"),
    ("video as a frame", fast([{**video(), "role": "first_frame"}]), "content[0].role"),
    ("ten images", fast([image() for _ in range(10)]), "metadata.content"),
    ("four videos", fast([video() for _ in range(4)]), "metadata.content"),
    ("four audio", fast([audio() for _ in range(4)]), "metadata.content"),
    (
        "model maximum below nine",
        {**with_changes(model="grok-imagine-video"), "metadata": {"content": [image(), image()]}},
        "metadata.content",
    ),
    (
        "reference images mixed with frames",
        fast([image(), image(role="first_frame")]),
        "metadata.content",
    ),
    ("two first frames", fast([image(role="first_frame"), image(role="first_frame")]), "role"),
    (
        "frames on a model without frame mode",
        {
            **with_changes(model="happyhorse-1.0-r2v"),
            "metadata": {"content": [image("https://e.com/f", "first_frame")]},
        },
        "metadata.content",
    ),
    ("model that needs an image", with_changes(model="happyhorse-1.0-i2v"), "metadata.content"),
    ("@image2 with one image", fast([image()], "@image1 meets @image2"), "prompt"),
    ("@IMAGE1 with no image", fast([], "@IMAGE1 dances"), "prompt"),
    ("@Video1 with no video", fast([image()], "@image1 moves like @Video1"), "prompt"),
    ("@audio2 with one audio", fast([audio()], "to the beat of @audio2"), "prompt"),
    ("@image0", fast([image()], "@image0 waves"), "prompt"),
]


@pytest.mark.parametrize(("body", "param"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
async def test_submit_refuses_bodies_the_provider_would_refuse_with_400(
    client: Client, body: Any, param: str
) -> None:
    response = await submit(client, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert param in error["param"]
    assert error["message"]
    stats = (await client.get("/_sim/stats")).json()
    assert stats["bad_requests"] == 1
    assert stats["submissions"] == 0


async def test_submit_refuses_a_body_that_is_not_json(client: Client) -> None:
    response = await client.post(SUBMIT, content=b"{not json")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "body"


@pytest.mark.parametrize(
    "body",
    [SEED_001_SUBMIT, SEED_001_CONTENT, SEED_004_CURL],
    ids=["seed-001-submit", "seed-001-content", "seed-004"],
)
async def test_the_seed_request_bodies_are_accepted(
    make_client: Callable[..., Client], body: dict[str, Any]
) -> None:
    client = make_client(webhooks=False)  # the seed's callback host is not ours to call
    response = await submit(client, body)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "submitted"


@pytest.mark.parametrize(
    "body",
    [
        fast(
            [image() for _ in range(9)] + [video() for _ in range(3)] + [audio() for _ in range(3)],
            "@image9 and @IMAGE1 move like @video3 to @Audio3",
        ),
        fast([image(role="first_frame"), image(role="last_frame")], "from @image1 to @image2"),
        fast([], "no references at all, email me@images.example"),
        with_changes(seconds=...),
    ],
    ids=["full-house", "first-last-frames", "no-citation", "seconds-defaulted"],
)
async def test_submit_accepts_bodies_at_the_limits(client: Client, body: dict[str, Any]) -> None:
    response = await submit(client, body)
    assert response.status_code == 200, response.text


# Idempotency and the concurrency cap ----------------------------------------------------


async def test_a_repeated_idempotency_key_returns_the_original_task_and_counts_a_duplicate(
    make_client: Callable[..., Client],
) -> None:
    client = make_client(honour_idempotency=True)
    first = await submit(client, idem="job-1")
    again = await submit(client, idem="job-1")
    other = await submit(client, idem="job-2")
    assert again.status_code == 200
    assert again.json()["task_id"] == first.json()["task_id"]
    assert other.json()["task_id"] != first.json()["task_id"]
    stats = (await client.get("/_sim/stats")).json()
    assert stats["submissions"] == 2
    assert stats["duplicates"] == 1
    assert stats["duplicates_by_idempotency_key"] == {"job-1": 1}
    assert stats["keys"][fp(KEY)]["duplicates"] == 1
    debug = (await client.get(f"/_sim/tasks/{first.json()['task_id']}")).json()
    assert debug["idempotency_key"] == "job-1"


async def test_an_idempotency_key_is_scoped_to_the_api_key(
    make_client: Callable[..., Client],
) -> None:
    client = make_client(honour_idempotency=True)
    mine = (await submit(client, idem="job-1")).json()["task_id"]
    theirs = (
        await client.post(
            SUBMIT,
            json=BASIC,
            headers={"Idempotency-Key": "job-1", "Authorization": f"Bearer {OTHER_KEY}"},
        )
    ).json()["task_id"]
    assert mine != theirs
    assert (await client.get("/_sim/stats")).json()["duplicates"] == 0


async def test_an_idempotency_key_reused_with_another_body_is_a_conflict(
    make_client: Callable[..., Client],
) -> None:
    client = make_client(honour_idempotency=True)
    await submit(client, idem="job-1")
    changed = with_changes(prompt="something else")
    response = await submit(client, changed, idem="job-1")
    assert response.status_code == 409


async def test_the_concurrency_cap_answers_429_with_retry_after_until_a_task_finishes(
    make_client: Callable[..., Client], clock: FakeClock
) -> None:
    client = make_client(concurrency_cap=2, retry_after=3)
    assert [(await submit(client)).status_code for _ in range(2)] == [200, 200]
    refused = await submit(client)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "3"
    assert refused.json()["error"]["type"] == "rate_limit_error"
    other = await client.post(SUBMIT, json=BASIC, headers={"Authorization": f"Bearer {OTHER_KEY}"})
    assert other.status_code == 200  # the cap is per key
    clock.advance(11)
    assert (await submit(client)).status_code == 200
    stats = (await client.get("/_sim/stats")).json()
    assert stats["rate_limited"] == 1
    assert stats["keys"][fp(KEY)] == {
        "submissions": 3,
        "duplicates": 0,
        "rate_limited": 1,
        "peak_in_flight": 2,
        "in_flight": 1,
    }


async def test_retry_after_zero_means_the_time_until_a_slot_frees(
    make_client: Callable[..., Client], clock: FakeClock
) -> None:
    client = make_client(concurrency_cap=1, retry_after=0)
    await submit(client)
    clock.advance(2.5)
    assert (await submit(client)).headers["Retry-After"] == "8"


async def test_a_duplicate_submit_is_answered_even_when_the_key_is_full(
    make_client: Callable[..., Client],
) -> None:
    client = make_client(concurrency_cap=1, honour_idempotency=True)
    first = (await submit(client, idem="job-1")).json()["task_id"]
    again = await submit(client, idem="job-1")
    assert again.status_code == 200
    assert again.json()["task_id"] == first


async def test_peak_in_flight_counts_tasks_not_yet_final(client: Client, clock: FakeClock) -> None:
    for _ in range(5):
        await submit(client)
    clock.advance(11)
    await submit(client)
    stats = (await client.get("/_sim/stats")).json()
    assert stats["peak_in_flight_by_key"] == {fp(KEY): 5}
    assert stats["in_flight_by_key"] == {fp(KEY): 1}
    assert stats["submissions_by_key"] == {fp(KEY): 6}


async def test_stats_show_key_fingerprints_never_the_key(client: Client) -> None:
    await submit(client)
    text = (await client.get("/_sim/stats")).text
    assert KEY not in text
    assert fp(KEY) in text


# Fault injection ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", SUBMIT),
        ("GET", f"{SUBMIT}/task_x"),
        ("POST", "/v1/files"),
        ("POST", "/v1/images/generations"),
    ],
)
async def test_error_5xx_rate_one_fails_every_v1_endpoint(
    make_client: Callable[..., Client], method: str, path: str
) -> None:
    client = make_client(error_5xx_rate=1.0)
    response = await client.request(method, path, json=BASIC)
    assert response.status_code in (500, 502, 503)
    stats = (await client.get("/_sim/stats")).json()
    assert stats["errors_5xx"] == 1
    assert stats["submissions"] == 0


async def test_a_lost_submit_response_leaves_a_task_that_a_retry_with_the_same_key_finds(
    make_client: Callable[..., Client],
) -> None:
    client = make_client(honour_idempotency=True)
    await client.post("/_sim/config", json={"lost_response_rate": 1.0})
    lost = await submit(client, idem="job-9")
    assert lost.status_code == 502
    await client.post("/_sim/config", json={"lost_response_rate": 0.0})
    retry = await submit(client, idem="job-9")
    assert retry.status_code == 200
    stats = (await client.get("/_sim/stats")).json()
    assert stats["submissions"] == 1
    assert stats["duplicates"] == 1
    assert stats["lost_responses"] == 1


async def test_latency_delays_every_v1_response(
    make_client: Callable[..., Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(simulator.api, "asyncio", SimpleNamespace(sleep=record))
    client = make_client(latency=0.25)
    await submit(client)
    await client.get(f"{SUBMIT}/task_x")
    await client.get("/_sim/stats")
    assert slept == [0.25, 0.25]


# Urls: expiry, signatures, redirects ----------------------------------------------------


async def finished_url(client: Client, clock: FakeClock) -> tuple[str, str]:
    task_id = (await submit(client)).json()["task_id"]
    clock.advance(11)
    return task_id, (await client.get(f"{SUBMIT}/{task_id}")).json()["url"]


async def test_an_expired_url_is_refused_403_and_a_fresh_poll_gives_a_working_one(
    make_client: Callable[..., Client], clock: FakeClock
) -> None:
    client = make_client(url_ttl=30)
    task_id, url = await finished_url(client, clock)
    clock.advance(31)
    expired = await client.get(url)
    assert expired.status_code == 403
    assert "expired" in expired.json()["error"]["message"]
    fresh = (await client.get(f"{SUBMIT}/{task_id}")).json()["url"]
    assert fresh != url
    assert (await client.get(fresh)).content == video_bytes()
    assert (await client.get("/_sim/stats")).json()["downloads_refused"] == 1


@pytest.mark.parametrize(
    "mangle",
    [
        lambda u: u.replace("sig=", "sig=0"),
        lambda u: u.split("?")[0],
        lambda u: u.replace("expires=", "expires=9"),
    ],
    ids=["bad-sig", "no-query", "moved-expiry"],
)
async def test_a_tampered_url_is_refused_403(
    client: Client, clock: FakeClock, mangle: Callable[[str], str]
) -> None:
    _, url = await finished_url(client, clock)
    assert (await client.get(mangle(url))).status_code == 403


async def test_a_url_signed_for_one_task_does_not_open_another(
    client: Client, clock: FakeClock
) -> None:
    first, url = await finished_url(client, clock)
    second, _ = await finished_url(client, clock)
    assert (await client.get(url.replace(first, second))).status_code == 403


async def test_download_redirect_self_answers_302_to_a_second_url_that_serves_the_file(
    make_client: Callable[..., Client], clock: FakeClock
) -> None:
    client = make_client(download_redirect="self")
    _, url = await finished_url(client, clock)
    response = await client.get(url, follow_redirects=False)
    assert response.status_code == 302
    assert response.headers["location"].startswith("/_files/blob/videos/")
    followed = await client.get(url, follow_redirects=True)
    assert followed.content == video_bytes()


async def test_download_redirect_to_an_absolute_url_points_there(
    make_client: Callable[..., Client], clock: FakeClock
) -> None:
    client = make_client(download_redirect="http://10.0.0.1/private.mp4")
    _, url = await finished_url(client, clock)
    response = await client.get(url, follow_redirects=False)
    assert response.status_code == 302
    assert response.headers["location"] == "http://10.0.0.1/private.mp4"


async def test_public_url_sets_the_base_of_handed_out_urls(
    make_client: Callable[..., Client], clock: FakeClock
) -> None:
    client = make_client(public_url="https://cdn.sim.test/")
    _, url = await finished_url(client, clock)
    assert url.startswith("https://cdn.sim.test/_files/videos/")


# Files and images -----------------------------------------------------------------------


async def test_upload_answers_a_url_that_serves_the_uploaded_bytes(client: Client) -> None:
    data = b"\x89PNG fake portrait bytes"
    response = await client.post("/v1/files", files={"file": ("portrait.png", data, "image/png")})
    assert response.status_code == 200
    body = response.json()
    assert body["id"].startswith("file_")
    assert body["bytes"] == len(data)
    assert body["filename"] == "portrait.png"
    served = await client.get(body["url"])
    assert served.content == data
    assert served.headers["content-type"] == "image/png"
    assert (await client.get("/_sim/stats")).json()["uploads"] == 1


async def test_upload_without_a_file_field_is_refused_400(client: Client) -> None:
    response = await client.post("/v1/files", files={"document": ("a.png", b"x", "image/png")})
    assert response.status_code == 400
    assert (await client.post("/v1/files", json={"file": "a"})).status_code == 400


async def test_an_upload_keeps_bytes_that_look_like_a_boundary(client: Client) -> None:
    data = b"\r\n--not-the-boundary\r\n" + bytes(range(256)) * 4
    response = await client.post("/v1/files", files={"file": ("a.bin", data, "video/mp4")})
    assert response.status_code == 200
    assert (await client.get(response.json()["url"])).content == data


async def test_a_truncated_multipart_body_is_refused_400(client: Client) -> None:
    head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\nxyz'
    headers = {"content-type": "multipart/form-data; boundary=b"}
    response = await client.post("/v1/files", content=head, headers=headers)
    assert response.status_code == 400
    assert "truncated" in response.json()["error"]["message"]


async def test_upload_over_the_size_cap_is_refused_413(make_client: Callable[..., Client]) -> None:
    client = make_client(max_upload_bytes=1000)
    response = await client.post("/v1/files", files={"file": ("big.bin", b"x" * 5000)})
    assert response.status_code == 413


# Inspection -----------------------------------------------------------------------------


async def test_reset_forgets_tasks_and_counters_but_keeps_the_knobs(
    make_client: Callable[..., Client],
) -> None:
    client = make_client(concurrency_cap=3)
    task_id = (await submit(client)).json()["task_id"]
    await client.get(f"{SUBMIT}/{task_id}")
    assert (await client.post("/_sim/reset")).status_code == 200
    assert (await client.get(f"{SUBMIT}/{task_id}")).status_code == 404
    stats = (await client.get("/_sim/stats")).json()
    assert stats["tasks"] == 0
    assert stats["submissions"] == 0
    assert stats["polls"] == 1  # the poll after the reset
    assert (await client.get("/_sim/config")).json()["concurrency_cap"] == 3


async def test_config_changes_only_the_knobs_given(client: Client) -> None:
    before = (await client.get("/_sim/config")).json()
    after = (await client.post("/_sim/config", json={"failure_rate": 0.5, "latency": 0.0})).json()
    assert after == {**before, "failure_rate": 0.5}


@pytest.mark.parametrize(
    "change", [{"failure_rate": 2}, {"no_such_knob": 1}, {"concurrency_cap": -1}, ["x"]]
)
async def test_config_refuses_bad_knobs_400_and_keeps_the_old_ones(
    client: Client, change: Any
) -> None:
    before = (await client.get("/_sim/config")).json()
    response = await client.post("/_sim/config", json=change)
    assert response.status_code == 400
    assert (await client.get("/_sim/config")).json() == before


async def test_the_debug_view_shows_the_key_fingerprint_and_not_the_callback_url(
    make_client: Callable[..., Client],
) -> None:
    client = make_client(webhooks=False)
    body = with_changes(metadata__callback_url="http://127.0.0.1:9/hook/job-1/secret-token")
    task_id = (await submit(client, body)).json()["task_id"]
    debug = await client.get(f"/_sim/tasks/{task_id}")
    assert debug.json()["key"] == fp(KEY)
    assert debug.json()["has_callback"] is True
    assert "secret-token" not in debug.text
    poll = await client.get(f"{SUBMIT}/{task_id}")
    assert "secret-token" not in poll.text


async def test_unknown_paths_answer_json_404(client: Client) -> None:
    response = await client.get("/v1/nothing")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"


# The in-process helper and the CLI --------------------------------------------------------


@pytest.mark.anyio
async def test_the_in_process_simulator_serves_an_async_client() -> None:
    clock = FakeClock()
    async with InProcessSimulator(SimConfig(gen_time_mean=1.0), clock=clock) as sim:
        task_id = (await sim.client.post(SUBMIT, json=BASIC)).json()["task_id"]
        clock.advance(2)
        task = (await sim.client.get(f"{SUBMIT}/{task_id}")).json()
        assert task["status"] == "succeeded"
        assert (await sim.client.get(task["url"])).content == video_bytes()
        assert sim.sim.store.counters["polls"] == 1


def test_cli_has_an_option_per_knob() -> None:
    result = CliRunner().invoke(simulate, ["--help"])
    assert result.exit_code == 0
    for name in SimConfig.model_fields:
        assert "--" + name.replace("_", "-") in result.output
    assert "--gen-time" in result.output


def test_cli_options_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYDANCE_SIM_GEN_TIME_MEAN", "7")
    monkeypatch.setenv("RELAYDANCE_SIM_FAILURE_RATE", "0.25")
    config = config_from_options({"gen_time_mean": 0.5, "failure_rate": None, "webhooks": False})
    assert config.gen_time_mean == 0.5
    assert config.failure_rate == 0.25
    assert config.webhooks is False
