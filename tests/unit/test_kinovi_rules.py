"""Requests for a Kinovi alias: the documented bodies come out exactly, and every rule of
seed 003 refuses a bad request with its field and fix, before anything is enqueued."""

from __future__ import annotations

from typing import Any

import pytest

from tests.seed_bodies import (
    KINOVI_FIRST_AND_LAST_FRAME,
    KINOVI_IMAGE_TO_VIDEO,
    KINOVI_OMNI_ALL_MATERIALS,
    KINOVI_OMNI_REFERENCE,
    KINOVI_TEXT_TO_VIDEO,
)
from worker.errors import InvalidRequest
from worker.provider.dialects import get_dialect
from worker.render.pricing import estimate_cost, load_prices
from worker.render.request import RenderRequest
from worker.render.validation import validate_request

# The request that produces each documented body: (request fields, callback url, body).
DOCUMENTED: list[tuple[dict[str, Any], str | None, dict[str, Any]]] = [
    (
        {"model": "seedance-20", "ratio": "16:9", "seconds": 5,
         "prompt": "A serene mountain landscape at golden hour, cinematic camera slowly "
                   "panning right"},
        None, KINOVI_TEXT_TO_VIDEO,
    ),
    (
        {"model": "seedance-20", "images": ["https://example.com/your-image.jpg"],
         "prompt": "A cinematic shot with smooth camera movement, gentle wind blowing"},
        None, KINOVI_IMAGE_TO_VIDEO,
    ),
    (
        {"model": "seedance-20", "prompt": "A smooth transition from day to night",
         "images": ["https://example.com/first-frame.jpg", "https://example.com/last-frame.jpg"]},
        None, KINOVI_FIRST_AND_LAST_FRAME,
    ),
    (
        {"model": "seedance-20", "mode": "reference",
         "images": ["https://example.com/character-portrait.jpg"],
         "prompt": "A person @image1 walking on the beach at sunset, cinematic lighting"},
        None, KINOVI_OMNI_REFERENCE,
    ),
    (
        {"model": "seedance-20", "mode": "reference", "seconds": "8", "ratio": "9:16",
         "images": ["https://example.com/character.jpg"],
         "videos": ["https://example.com/dance.mp4"], "audio": ["https://example.com/music.mp3"],
         "prompt": "@image1 performs the moves from @video1, synced to the rhythm of @audio1"},
        "https://your-server.example.com/kinovi-webhook", KINOVI_OMNI_ALL_MATERIALS,
    ),
]  # fmt: skip


def kinovi_body(request: RenderRequest, callback_url: str | None = None) -> dict[str, Any]:
    """What the client posts for a validated request: the dialect's translation."""
    return get_dialect("kinovi").submit_body(request.to_body(callback_url=callback_url))


@pytest.mark.parametrize(("fields", "callback", "documented"), DOCUMENTED)
def test_each_documented_kinovi_body_is_what_a_validated_request_sends(
    fields: dict[str, Any], callback: str | None, documented: dict[str, Any]
) -> None:
    request = validate_request(fields, provider="kinovi")
    assert kinovi_body(request, callback) == documented


def test_keyframe_images_are_recorded_as_first_and_last_frame() -> None:
    as_images = validate_request(DOCUMENTED[2][0], provider="kinovi")
    as_frames = validate_request(
        {"model": "seedance-20", "prompt": "A smooth transition from day to night",
         "first_frame": "https://example.com/first-frame.jpg",
         "last_frame": "https://example.com/last-frame.jpg", "mode": "keyframe"},
        provider="kinovi",
    )  # fmt: skip
    assert as_images == as_frames
    assert (as_images.images, as_images.mode) == ((), "frames")
    assert as_images.fingerprint() == as_frames.fingerprint()


# Every rule: (request fields, field named, words of the message). ----------------------------

URL = "https://example.com/a.jpg"
BAD: list[tuple[dict[str, Any], str, str]] = [
    ({"model": "doubao-seedance-2-0-720p"}, "model", "use seedance-20 (standard"),
    ({"model": "seedance-21"}, "model", "seedance2-fast"),
    ({"seconds": 3}, "seconds", "use 4 to 15"),
    ({"seconds": 16}, "seconds", "use 4 to 15"),
    ({"ratio": "2:1"}, "ratio", "16:9, 9:16, 1:1, 3:4, 4:3, 21:9"),
    ({"resolution": "1080p"}, "resolution", "720p (the default) or 480p"),
    ({"upscale": "8k"}, "upscale", "use 4k"),
    ({"generate_audio": True}, "generate_audio", "drop it"),
    ({"prompt": "x" * 4001}, "prompt", "at most 4000"),
    ({"prompt": ""}, "prompt", "required for text-to-video"),
    ({"mode": "reference", "prompt": "", "images": [URL]}, "prompt", "required for reference"),
    ({"images": [URL] * 3}, "images", "takes 1 or 2 images"),
    ({"videos": ["https://e.com/v.mp4"]}, "videos", "use mode 'reference'"),
    ({"audio": ["https://e.com/a.mp3"]}, "audio", "use mode 'reference'"),
    ({"images": [URL], "first_frame": URL}, "images", "not both"),
    ({"last_frame": URL}, "last_frame", "give first_frame too"),
    ({"images": [URL], "prompt": "@image1 waves"}, "prompt", "only in mode 'reference'"),
    ({"mode": "reference", "images": [URL] * 10}, "images", "at most 9"),
    ({"mode": "reference", "images": [URL], "videos": ["https://e.com/v.mp4"] * 4},
     "videos", "at most 3"),
    ({"mode": "reference", "images": [URL], "audio": ["https://e.com/a.mp3"] * 4},
     "audio", "at most 3"),
    ({"mode": "reference", "audio": ["https://e.com/a.mp3"]}, "images", "at least one image"),
    ({"mode": "reference", "videos": ["https://e.com/v.mov"]}, "videos", "MP4 videos only"),
    ({"mode": "reference", "first_frame": URL, "images": [URL]}, "first_frame",
     "takes no first/last frame"),
    ({"mode": "reference", "images": [URL], "prompt": "@IMAGE2 dances"}, "prompt",
     "only one image; cite it as @image1"),
    ({"mode": "reference", "images": [URL] * 3, "prompt": "@Video1 moves"}, "prompt",
     "there is no video"),
    ({"mode": "reference", "images": [URL], "videos": ["https://e.com/v.mp4"] * 2,
      "prompt": "@image1 copies @video3"}, "prompt", "cite @video1 to @video2"),
    ({"images": ["/srv/uploads/cat.png"]}, "images", "Kinovi has no upload endpoint"),
    ({"mode": "reference", "images": [URL], "audio": ["song.mp3"]}, "audio",
     "give its https URL"),
    ({"images": ["ftp://example.com/a.jpg"]}, "images", "scheme must be http or https"),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "field", "words"), BAD)
def test_every_kinovi_rule_refuses_with_the_field_and_the_fix(
    fields: dict[str, Any], field: str, words: str
) -> None:
    data = {"model": "seedance-20", "prompt": "a clip", **fields}
    with pytest.raises(InvalidRequest) as info:
        validate_request(data, provider="kinovi")
    assert any(f == field and words in m for f, m in info.value.problems), info.value.problems


def test_citations_are_counted_per_kind_and_any_case() -> None:
    request = validate_request(
        {"model": "seedance2-fast", "mode": "reference", "prompt": "@Image2 and @IMAGE1 move "
         "like @video1 to @Audio1", "images": [URL, "https://example.com/b.png"],
         "videos": ["https://example.com/v.mp4"], "audio": ["https://example.com/s.wav"]},
        provider="kinovi",
    )  # fmt: skip
    assert kinovi_body(request)["inputs"]["urls"] == [
        URL,
        "https://example.com/b.png",
        "https://example.com/v.mp4",
    ]


def test_relaydance_refuses_the_kinovi_options_and_points_at_kinovi_models() -> None:
    with pytest.raises(InvalidRequest) as info:
        validate_request({"model": "seedance-20", "prompt": "p", "upscale": "4k"})
    problems = dict(info.value.problems)
    assert "seedance-20 is a kinovi model" in problems["model"]
    assert "whose provider is kinovi" in problems["upscale"]


@pytest.mark.parametrize(
    ("fields", "usd"),
    [({"model": "seedance-20", "seconds": 5}, 1.00),
     ({"model": "seedance-20", "seconds": 5, "upscale": "4k"}, 1.70),
     ({"model": "seedance-20", "seconds": 15, "upscale": "4K"}, 5.10),
     ({"model": "seedance2-fast", "seconds": 5}, 0.70),
     ({"model": "seedance2-fast", "seconds": 10, "upscale": "4k"}, 2.80),
     ({"model": "seedance-20", "seconds": 5, "resolution": "480p"}, 0.50),
     ({"model": "seedance2-fast", "seconds": 5, "resolution": "480p"}, 0.35)],
)  # fmt: skip
def test_kinovi_estimates_are_seed_003s_credit_prices(fields: dict[str, Any], usd: float) -> None:
    request = validate_request({"prompt": "p", **fields}, provider="kinovi")
    assert estimate_cost(request) == pytest.approx(usd)


def test_kinovi_prices_can_be_overridden_like_any_other() -> None:
    table = load_prices({"seedance-20": {"credits_per_second": 50,
                                         "upscale_credits_per_second": 30}})  # fmt: skip
    request = validate_request(
        {"model": "seedance-20", "prompt": "p", "seconds": 4, "upscale": "4k"}, provider="kinovi"
    )
    assert table.estimate(request) == pytest.approx((50 + 30) * 4 * 0.005)
