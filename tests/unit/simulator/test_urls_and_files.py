"""The simulator's signed URLs (expiry, tampering, redirects) and its uploads."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from simulator import video_bytes
from tests.conftest import FakeClock
from tests.simulator_requests import BASIC, SUBMIT
from tests.unit.simulator.content import Client, image, submit

pytestmark = pytest.mark.anyio


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


async def test_the_media_urls_a_body_cited_are_kept_in_order_for_the_admin_views(
    client: Client,
) -> None:
    first, second = "https://example.com/still.png", "https://example.com/b.jpg"
    body = {**BASIC, "metadata": {**BASIC["metadata"], "content": [image(first), image(second)]}}
    task_id = (await submit(client, body, idem="job-cites")).json()["task_id"]
    (task,) = (await client.get("/_sim/idempotency/job-cites")).json()["tasks"]
    assert (task["task_id"], task["input_urls"]) == (task_id, [first, second])
    assert (await client.get(f"/_sim/tasks/{task_id}")).json()["input_urls"] == [first, second]
    plain = (await submit(client, idem="job-plain")).json()["task_id"]
    assert (await client.get(f"/_sim/tasks/{plain}")).json()["input_urls"] == []
