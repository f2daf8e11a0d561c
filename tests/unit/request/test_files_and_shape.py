"""Render requests: URLs and local files are checked for what they are, and any input shape is answered with InvalidRequest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.request.helpers import SEEDANCE, only_problem, problems, request, url
from worker.errors import InvalidRequest, RelayDanceError
from worker.render.catalogue import known_models
from worker.render.request import RenderRequest
from worker.render.validation import validate_request

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
_FIELD_NAMES = [*RenderRequest.model_fields, "extra"]


@pytest.mark.parametrize(
    ("source", "fix"),
    [
        ("ftp://example.com/a.jpg", "scheme must be http or https"),
        ("http://", "no host"),
        ("https:///x.jpg", "no host"),
        ("https://example.com/my photo.jpg", "percent-encode"),
        ("https://exa mple.com/a.jpg", "percent-encode"),
        ("https://example.com:abc/a.jpg", "use an http(s) URL"),
        ("https://[::1/a.jpg", "use an http(s) URL"),
    ],
)
def test_malformed_urls_are_refused(source: str, fix: str) -> None:
    only_problem(request(images=[source]), "images", "malformed URL", fix)


def test_a_malformed_url_message_never_echoes_the_path_or_query() -> None:
    signed = "ftp://cdn.example.com/private/a.jpg?signature=s3cr3t"
    message = only_problem(request(images=[signed]), "images", "cdn.example.com")
    assert "s3cr3t" not in message
    assert "private" not in message


def test_a_missing_local_file_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.png"
    only_problem(request(images=[str(missing)]), "images", str(missing), "does not exist")


def test_a_directory_is_not_a_file(tmp_path: Path) -> None:
    only_problem(request(images=[str(tmp_path)]), "images", "is a directory")


def test_a_text_file_named_png_is_not_an_image(media: dict[str, Path]) -> None:
    only_problem(
        request(images=[str(media["text"])]),
        "images",
        "not a recognised media file",
        "give an image file",
    )


def test_an_mp4_given_as_an_image_is_refused(media: dict[str, Path]) -> None:
    only_problem(
        request(images=[str(media["mp4"])]), "images", "is a video file", "give an image file"
    )


def test_a_png_given_as_a_video_is_refused(media: dict[str, Path]) -> None:
    only_problem(
        request(videos=[str(media["png"])]), "videos", "is an image file", "give a video file"
    )


def test_a_heic_still_given_as_a_video_is_refused_as_an_image(tmp_path: Path) -> None:
    # HEIF shares the mp4 box layout (an ftyp box first); only the brand tells them apart.
    still = tmp_path / "still.mov"
    still.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64))
    only_problem(request(videos=[str(still)]), "videos", "is an image file", "give a video file")


def test_a_wav_given_as_a_first_frame_is_refused(media: dict[str, Path]) -> None:
    only_problem(request(first_frame=str(media["wav"])), "first_frame", "is an audio file")


def test_real_media_files_are_accepted_and_resolved_to_absolute_paths(
    media: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(media["png"].parent)
    valid = validate_request(
        request(
            images=["still.png", "./photo.jpg"],
            videos=["clip.mp4"],
            audio=["voice.wav", str(media["mp3"])],
        )
    )
    assert valid.images == (str(media["png"].resolve()), str(media["jpeg"].resolve()))
    assert valid.videos == (str(media["mp4"].resolve()),)
    assert valid.audio == (str(media["wav"].resolve()), str(media["mp3"].resolve()))
    assert all(Path(p).is_absolute() for p in valid.local_paths())
    assert len(valid.local_paths()) == 5


def test_files_are_not_read_when_checks_are_off(tmp_path: Path) -> None:
    missing = str(tmp_path / "later.png")
    assert validate_request(request(images=[missing]), check_files=False).images == (missing,)


def test_an_unknown_field_is_refused_naming_the_known_fields() -> None:
    message = only_problem(request(image=[url("a.jpg")]), "image", "unknown field")
    for name in ("model", "prompt", "seconds", "images", "videos", "audio", "first_frame"):
        assert name in message


def test_several_problems_are_reported_at_once() -> None:
    found = problems(
        {
            "model": SEEDANCE,
            "prompt": "@image3 in the rain",
            "seconds": 30,
            "ratio": "2:1",
            "images": ["ftp://example.com/a.jpg"],
            "colour": "red",
        }
    )
    fields = [field for field, _ in found]
    assert sorted(fields) == ["colour", "images", "prompt", "ratio", "seconds"]


def test_an_error_is_also_a_value_error_and_lists_problems_in_its_message() -> None:
    with pytest.raises(ValueError, match=r"seconds: 30 is outside") as info:
        validate_request(request(seconds=30))
    assert isinstance(info.value, InvalidRequest)
    assert isinstance(info.value, RelayDanceError)
    assert info.value.code == "invalid_request"


@pytest.mark.parametrize(
    "data",
    [
        None,
        ["model", "prompt"],
        "doubao-seedance-2-0-1080p",
        {},
        {"model": 7, "prompt": ["x"]},
        request(images={"url": "x"}),
        request(images=[None]),
        request(seconds="²"),
        request(seconds=10**30),
        request(images=["~no-such-user-here/a.png"]),
        request(images=["a\x00b.png"]),
        request(mode="keyframe"),
        {1: 2, "model": SEEDANCE, "prompt": "x"},
    ],
)
def test_hostile_input_raises_only_invalid_request(data: Any) -> None:
    found = problems(data)
    assert found
    assert all(isinstance(f, str) and isinstance(m, str) and m for f, m in found)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.sampled_from(_FIELD_NAMES), _JSON | st.sampled_from(known_models())),
)
def test_arbitrary_json_is_accepted_or_refused_with_invalid_request(data: dict[str, Any]) -> None:
    found: list[tuple[str, str]] = []
    try:
        validate_request(data, check_files=False)
    except InvalidRequest as exc:  # anything else escapes and fails the test
        found = exc.problems
    assert found or {"model", "prompt"} <= data.keys()
