"""The simulator refuses the bodies the provider would refuse, each with its own message, and accepts the seed bodies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.seed_bodies import SEED_001_CONTENT, SEED_001_SUBMIT, SEED_004_CURL
from tests.simulator_requests import SUBMIT, with_changes
from tests.unit.simulator.content import Client, audio, image, submit, video

pytestmark = pytest.mark.anyio


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
