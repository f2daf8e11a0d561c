"""The body RenderRequest.to_body builds is pinned to the documented shape (seeds 001, 004), with its derived values and the allow-list of local media."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.request.helpers import SEEDANCE, SEEDANCE_15, only_problem, request, url
from worker.errors import InvalidRequest
from worker.render.pricing import estimate_cost
from worker.render.request import RenderRequest
from worker.render.validation import validate_request


def test_the_body_sends_seconds_as_a_string_and_options_inside_metadata() -> None:
    body = validate_request(request(seconds=10, ratio="9:16", generate_audio=True)).to_body()
    assert body == {
        "model": SEEDANCE,
        "prompt": "A dancer spins in golden hour light",
        "seconds": "10",
        "metadata": {"ratio": "9:16", "resolution": "1080p", "generate_audio": True},
    }


def test_the_callback_url_goes_only_inside_metadata() -> None:
    hook = "https://hooks.example.com/job-1/token"
    body = validate_request(request()).to_body(callback_url=hook)
    assert body["metadata"]["callback_url"] == hook
    assert "callback_url" not in body
    assert "callback_url" not in validate_request(request()).to_body()["metadata"]


def test_content_lists_images_then_videos_then_audio_with_their_roles() -> None:
    body = validate_request(
        request(
            audio=[url("s.mp3")],
            videos=[url("m.mp4")],
            images=[url("a.jpg"), url("b.jpg")],
        )
    ).to_body()
    assert body["metadata"]["content"] == [
        {"type": "image_url", "image_url": {"url": url("a.jpg")}, "role": "reference_image"},
        {"type": "image_url", "image_url": {"url": url("b.jpg")}, "role": "reference_image"},
        {"type": "video_url", "video_url": {"url": url("m.mp4")}, "role": "reference_video"},
        {"type": "audio_url", "audio_url": {"url": url("s.mp3")}, "role": "reference_audio"},
    ]


def test_local_paths_are_sent_as_their_uploaded_urls(media: dict[str, Path]) -> None:
    valid = validate_request(request(images=[url("a.jpg"), str(media["png"])]))
    local = str(media["png"].resolve())
    body = valid.to_body(media_urls={local: "https://files.example.com/up_1"})
    assert [entry["image_url"]["url"] for entry in body["metadata"]["content"]] == [
        url("a.jpg"),
        "https://files.example.com/up_1",
    ]


def test_a_local_path_without_an_upload_cannot_become_a_body(media: dict[str, Path]) -> None:
    valid = validate_request(request(images=[str(media["png"])]))
    with pytest.raises(InvalidRequest, match="has not been uploaded yet"):
        valid.to_body()
    with pytest.raises(InvalidRequest, match="has not been uploaded yet"):
        valid.to_body(media_urls={"/some/other.png": "https://files.example.com/x"})


def test_defaults_fill_ratio_and_resolution_from_the_catalogue() -> None:
    body = validate_request({"model": SEEDANCE_15, "prompt": "a cat"}).to_body()
    assert body["seconds"] == "5"
    assert body["metadata"] == {"ratio": "16:9", "resolution": "720p"}


def test_equal_requests_have_equal_fingerprints() -> None:
    one = validate_request(request(seconds="5", images=url("a.jpg")))
    two = validate_request(request(seconds=5, images=[url("a.jpg")]))
    assert one.fingerprint() == two.fingerprint()
    assert len(one.fingerprint()) == 64


@pytest.mark.parametrize(
    "change",
    [
        {"seconds": 6},
        {"prompt": "A dancer spins in blue hour light"},
        {"ratio": "9:16"},
        {"images": [url("b.jpg")]},
        {"images": [url("a.jpg"), url("b.jpg")]},
        {"generate_audio": True},
        {"model": "doubao-seedance-2-0-720p"},
    ],
)
def test_different_requests_have_different_fingerprints(change: dict[str, Any]) -> None:
    base = validate_request(request(images=[url("a.jpg")]))
    other = validate_request({**request(images=[url("a.jpg")]), **change})
    assert base.fingerprint() != other.fingerprint()


def test_estimated_cost_follows_the_models_price_per_second() -> None:
    # Seed 003: 40 credits/s standard, 28 credits/s fast, 1 credit = $0.005.
    assert estimate_cost(validate_request(request(seconds=10))) == 2.0
    fast = validate_request(request(model="doubao-seedance-2-0-fast-260128", seconds=5))
    assert estimate_cost(fast) == 0.7
    assert estimate_cost(validate_request(request(seconds=15))) == 3.0


def test_the_estimate_follows_the_configured_price_table(monkeypatch: pytest.MonkeyPatch) -> None:
    from config.settings import get_settings

    monkeypatch.setenv("RELAYDANCE_PRICES", '{"doubao-seedance-2-0-fast-260128": 0.5}')
    get_settings.cache_clear()
    try:
        fast = validate_request({"model": "doubao-seedance-2-0-fast-260128", "prompt": "x"})
        assert estimate_cost(fast) == 2.5
    finally:
        monkeypatch.delenv("RELAYDANCE_PRICES")
        get_settings.cache_clear()


def test_a_valid_request_passes_through_unchanged() -> None:
    valid = validate_request(request(images=[url("a.jpg")]))
    assert validate_request(valid) == valid
    assert RenderRequest.model_validate(valid.model_dump(mode="json")) == valid


def test_without_media_dirs_no_local_file_is_taken_whatever_the_working_directory(
    media: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from config.settings import get_settings

    monkeypatch.delenv("RELAYDANCE_MEDIA_DIRS", raising=False)
    get_settings.cache_clear()
    monkeypatch.chdir(media["png"].parent)  # the file sits in the working directory
    message = only_problem(request(images=["still.png"]), "images", "RELAYDANCE_MEDIA_DIRS",
                           "is unset", "give a URL")  # fmt: skip
    assert "'still.png'" in message


def test_the_allow_list_is_the_same_from_any_working_directory(
    media: dict[str, Path], tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from config.settings import load_settings
    from worker.render.local_media import allowed_dirs, check_file

    settings = load_settings(media_dirs=str(media["png"].parent))
    seen = []
    for cwd in (media["png"].parent, tmp_path_factory.mktemp("elsewhere"), Path("/")):
        monkeypatch.chdir(cwd)
        seen.append(allowed_dirs(settings))
        assert check_file(str(media["png"]), "image", allowed_dirs(settings))[0] is None
    assert seen[0] == seen[1] == seen[2] == (media["png"].parent.resolve(),)
    monkeypatch.chdir(media["png"].parent)
    assert allowed_dirs(load_settings(media_dirs=None)) == ()


def test_a_relative_media_dir_is_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from config.settings import SettingsError, load_settings

    monkeypatch.setenv("RELAYDANCE_MEDIA_DIRS", "/srv/media:uploads")
    with pytest.raises(SettingsError, match="RELAYDANCE_MEDIA_DIRS: 'uploads' is relative"):
        load_settings()
    monkeypatch.setenv("RELAYDANCE_MEDIA_DIRS", "/srv/media:~/inbox")
    assert load_settings().media_dirs == "/srv/media:~/inbox"
