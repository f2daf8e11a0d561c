"""The simulator's ``POST /v1/images/generations``: synchronous urls to real PNGs of the size
asked for, checked per model, billed at once, and the same faults as video.

In-process with a fake clock; a reply dropped on the wire and a generation slower than the
client's patience are in tests/integration/test_images_provider.py (they need real HTTP).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from simulator import image_png, image_sha256, png_size
from simulator.config import SimConfig
from simulator.core import Simulator
from tests.conftest import FakeClock
from tests.simulator_requests import BASIC, SUBMIT, fp
from tests.simulator_requests import KEY as SIM_KEY

pytestmark = pytest.mark.anyio

Client = httpx.AsyncClient
IMAGES = "/v1/images/generations"
ASK = {"model": "grok-imagine-image", "prompt": "a lighthouse at dusk, keyframe"}


async def stats(client: Client) -> dict[str, Any]:
    found: dict[str, Any] = (await client.get("/_sim/stats")).json()
    return found


async def generate(client: Client, body: Any = None, **headers: str) -> httpx.Response:
    return await client.post(IMAGES, json=ASK if body is None else body, headers=headers)


async def test_an_image_request_answers_n_urls_at_once_each_a_png_of_the_size_asked(
    make_client: Callable[..., Client],
) -> None:
    client = make_client()
    answer = await generate(client, {**ASK, "n": 3, "size": "1024x1024"})
    assert answer.status_code == 200
    body = answer.json()
    assert isinstance(body["created"], int) and len(body["data"]) == 3
    urls = [item["url"] for item in body["data"]]
    assert all(url.startswith("http://sim.test/_files/images/img_") for url in urls)
    pngs = [(await client.get(url)) for url in urls]
    assert {p.headers["content-type"] for p in pngs} == {"image/png"}
    assert [png_size(p.content) for p in pngs] == [(1024, 1024)] * 3
    assert len({p.content for p in pngs}) == 3  # every image differs from the next
    found = await stats(client)
    assert (found["images"], found["image_requests"], found["images_billed"]) == (3, 1, 3)
    assert found["image_downloads"] == 3 and found["submissions"] == 0


async def test_n_defaults_to_one_and_size_to_the_models_default(
    make_client: Callable[..., Client],
) -> None:
    client = make_client()
    body = (await generate(client)).json()
    assert len(body["data"]) == 1
    png = (await client.get(body["data"][0]["url"])).content
    assert png_size(png) == (1024, 1024)


async def test_the_served_png_is_the_same_bytes_for_the_same_image_id(
    make_client: Callable[..., Client],
) -> None:
    client = make_client()
    url = (await generate(client)).json()["data"][0]["url"]
    image_id = url.split("/images/")[1].split(".png")[0]
    first, again = (await client.get(url)).content, (await client.get(url)).content
    assert first == again == image_png(image_id, 1024, 1024)
    assert hashlib.sha256(first).hexdigest() == image_sha256(image_id, 1024, 1024)


def test_a_png_of_any_size_is_valid_and_says_its_size_in_ihdr() -> None:
    import zlib

    data = image_png("img_x", 37, 5)
    assert png_size(data) == (37, 5)
    idat_len = int.from_bytes(data[33:37], "big")
    pixels = zlib.decompress(data[41 : 41 + idat_len])
    assert len(pixels) == 5 * (1 + 37 * 3)  # one filter byte and 37 RGB pixels per row
    assert png_size(b"GIF89a" + bytes(30)) is None


async def test_base64_answers_carry_the_same_png(make_client: Callable[..., Client]) -> None:
    client = make_client()
    body = (await generate(client, {**ASK, "response_format": "b64_json"})).json()
    assert png_size(base64.b64decode(body["data"][0]["b64_json"])) == (1024, 1024)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "x"}, "model"),
        ({**ASK, "model": "grok-imagine-video"}, "model"),
        ({**ASK, "prompt": "  "}, "prompt"),
        ({**ASK, "prompt": "x" * 4001}, "prompt"),
        ({**ASK, "n": 0}, "n"),
        ({**ASK, "n": 5}, "n"),
        ({**ASK, "n": "2"}, "n"),
        ({**ASK, "n": True}, "n"),
        ({**ASK, "size": "512x512"}, "size"),
        ({**ASK, "model": "grok-imagine-image-quality", "size": "1792x1024"}, "size"),
        ({**ASK, "response_format": "svg"}, "response_format"),
        (["a list"], "body"),
    ],
)
async def test_a_request_the_model_does_not_take_is_refused_400_naming_the_field(
    make_client: Callable[..., Client], body: Any, param: str
) -> None:
    client = make_client()
    answer = await generate(client, body)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["param"] == param and error["message"].startswith(param)
    found = await stats(client)
    assert (found["images_billed"], found["bad_requests"]) == (0, 1)


async def test_a_lost_reply_comes_after_the_images_were_made_and_billed(
    make_client: Callable[..., Client],
) -> None:
    client = make_client(lost_response_rate=1.0)
    answer = await generate(client, {**ASK, "n": 2})
    assert answer.status_code == 502
    assert answer.headers["content-type"].startswith("text/html")  # a gateway's page
    found = await stats(client)
    assert (found["images_billed"], found["lost_responses"]) == (2, 1)


@pytest.mark.parametrize(("knobs", "dropped"), [
    ({"drop_reply_every": 3}, [3, 6]),  # video's N, counted apart
    ({"drop_reply_every": 9, "image_drop_reply_every": 2}, [2, 4, 6]),
    ({"drop_reply_every": 2, "image_drop_reply_every": 0}, []),
])  # fmt: skip
def test_image_replies_are_dropped_every_nth_by_their_own_knob_or_videos(
    knobs: dict[str, int], dropped: list[int]
) -> None:
    sim = Simulator(SimConfig(**knobs))
    faults = [sim.image_fault() for _ in range(6)]
    assert [n for n, fault in enumerate(faults, start=1) if fault == "drop"] == dropped
    assert sim.store.counters["accepted"] == 0  # video's count is its own


async def test_an_injected_5xx_is_the_providers_own_json_and_bills_nothing(
    make_client: Callable[..., Client],
) -> None:
    client = make_client(error_5xx_rate=1.0)
    answer = await generate(client)
    assert answer.status_code in (500, 502, 503)
    assert answer.json()["error"]["message"]
    assert (await stats(client))["images_billed"] == 0


async def test_an_outage_and_a_revoked_key_refuse_before_any_image_is_made(
    make_client: Callable[..., Client],
) -> None:
    client = make_client(outage=True)
    assert (await generate(client)).status_code == 503
    await client.post("/_sim/config", json={"outage": False, "revoked_keys": [fp(SIM_KEY)]})
    assert (await generate(client)).status_code == 401
    assert (await stats(client))["images_billed"] == 0


async def test_each_image_spends_one_unit_of_credit_and_too_little_is_refused_403(
    make_client: Callable[..., Client],
) -> None:
    client = make_client(credit_clips=3)
    assert (await generate(client, {**ASK, "n": 2})).status_code == 200
    refused = await generate(client, {**ASK, "n": 2})
    assert refused.status_code == 403
    assert "balance" in refused.json()["error"]["message"]
    assert (await generate(client)).status_code == 200  # the last unit
    found = await stats(client)
    assert (found["credits_left"], found["images_billed"], found["refused_credits"]) == (0, 3, 1)


async def test_a_model_the_key_may_not_use_is_refused_403(
    make_client: Callable[..., Client],
) -> None:
    client = make_client(forbidden_models=["grok-imagine-image-quality"])
    refused = await generate(client, {**ASK, "model": "grok-imagine-image-quality"})
    assert refused.status_code == 403 and "model" in refused.json()["error"]["message"]
    assert (await generate(client)).status_code == 200


async def test_a_key_at_its_concurrency_cap_is_refused_429_for_images_too(
    make_client: Callable[..., Client],
) -> None:
    client = make_client(concurrency_cap=1, retry_after=2)
    assert (await client.post(SUBMIT, json=BASIC)).status_code == 200  # a clip generating
    refused = await generate(client)
    assert refused.status_code == 429 and refused.headers["retry-after"] == "2"
    found = await stats(client)
    assert (found["rate_limited"], found["images_billed"]) == (1, 0)


async def test_an_image_counts_against_the_cap_while_it_generates(
    make_client: Callable[..., Client], clock: FakeClock
) -> None:
    # 30 s of generation on a clock scaled to 1/1000: 30 ms of real waiting.
    client = make_client(concurrency_cap=1, image_gen_time=30.0, time_scale=0.001)
    pending = asyncio.create_task(generate(client))
    for _ in range(1000):  # until the image is being generated (bounded)
        if (await stats(client))["image_requests"] == 1:
            break
        await asyncio.sleep(0.001)
    assert (await client.post(SUBMIT, json=BASIC)).status_code == 429
    assert (await pending).status_code == 200
    clock.advance(1.0)  # the generation is over: the key is free again
    assert (await client.post(SUBMIT, json=BASIC)).status_code == 200
    assert (await stats(client))["keys"][fp(SIM_KEY)]["peak_in_flight"] == 1


async def test_a_repeated_idempotency_key_bills_again_unless_the_provider_honours_keys(
    make_client: Callable[..., Client],
) -> None:
    client = make_client()
    first = await generate(client, **{"Idempotency-Key": "rdj_a"})
    second = await generate(client, **{"Idempotency-Key": "rdj_a"})
    assert first.json()["data"] != second.json()["data"]
    found = await stats(client)
    assert (found["image_paid_twice"], found["extra_billed_image_requests"]) == (1, 1)
    await generate(client, **{"Idempotency-Key": "rdj_c"})
    await generate(client)  # no key: billed, counted by no job
    by_key = (await stats(client))["image_requests_by_idempotency_key"]
    assert by_key == {"rdj_a": 2, "rdj_c": 1}

    honest = make_client(honour_idempotency=True)
    first = await generate(honest, **{"Idempotency-Key": "rdj_b"})
    again = await generate(honest, **{"Idempotency-Key": "rdj_b"})
    assert [u["url"].split("?")[0] for u in first.json()["data"]] == [
        u["url"].split("?")[0] for u in again.json()["data"]
    ]
    assert (
        await generate(honest, {**ASK, "n": 2}, **{"Idempotency-Key": "rdj_b"})
    ).status_code == 409
    found = await stats(honest)
    assert (found["images_billed"], found["image_paid_twice"]) == (1, 0)


async def test_an_unknown_or_forged_image_url_is_refused(
    make_client: Callable[..., Client],
) -> None:
    client = make_client()
    url = (await generate(client)).json()["data"][0]["url"]
    forged = url.replace("/images/img_", "/images/img_0")
    assert (await client.get(forged)).status_code == 403  # the signature covers the id
    await client.post("/_sim/reset")
    assert (await client.get(url)).status_code == 404  # forgotten with the reset


async def test_a_clip_citing_a_still_whose_url_expired_is_refused_unbilled_and_an_uploads_is_not(
    make_client: Callable[..., Client], clock: FakeClock
) -> None:
    client = make_client(url_ttl=60.0)
    (still,) = [item["url"] for item in (await generate(client)).json()["data"]]
    upload = await client.post("/v1/files", files={"file": ("k.png", image_png("k", 8, 8))})
    uploaded = upload.json()["url"]

    def citing(url: str) -> dict[str, Any]:
        entry = {"type": "image_url", "image_url": {"url": url}, "role": "reference_image"}
        return {**BASIC, "metadata": {**BASIC["metadata"], "content": [entry]}}

    assert (await client.post(SUBMIT, json=citing(still))).status_code == 200
    clock.advance(61)
    refused = await client.post(SUBMIT, json=citing(still))
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "metadata.content"
    assert "url expired" in refused.json()["error"]["message"]
    assert (await client.post(SUBMIT, json=citing(uploaded))).status_code == 200
    found = await stats(client)
    assert (found["submissions"], found["stale_inputs"]) == (2, 1)
