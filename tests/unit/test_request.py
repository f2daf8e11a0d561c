"""Render requests are refused before anything is spent, each problem naming its field and fix.

Every rule of :func:`worker.render.validation.validate_request` has its own test here, and the body
:meth:`RenderRequest.to_body` builds is pinned to the documented shape (seeds 001, 004).
"""

from __future__ import annotations

import io
import struct
import wave
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import PNG_BYTES, video_bytes
from worker.errors import InvalidRequest, RelayDanceError
from worker.render.catalogue import known_models
from worker.render.pricing import estimate_cost
from worker.render.request import MAX_PROMPT_CHARS, MAX_SECONDS, RenderRequest
from worker.render.validation import validate_request

SEEDANCE = "doubao-seedance-2-0-1080p"  # 4-15 s, 9 images / 3 videos / 3 audio, audio on
SEEDANCE_15 = "seedance-1-5-pro-with-audio"  # 4-12 s, 16:9/9:16/1:1, 480p/720p, no flag
HAPPYHORSE_R2V = "happyhorse-1.0-r2v"  # 5-10 s, images only, no frames


def url(name: str) -> str:
    return f"https://example.com/{name}"


def problems(data: Any, *, check_files: bool = True) -> list[tuple[str, str]]:
    """The (field, message) problems validate_request reports for ``data``."""
    with pytest.raises(InvalidRequest) as info:
        validate_request(data, check_files=check_files)
    return info.value.problems


def only_problem(data: Any, field: str, *fix: str) -> str:
    """Assert exactly one problem, on ``field``, whose message contains every ``fix`` text."""
    found = problems(data)
    assert [f for f, _ in found] == [field], found
    message = found[0][1]
    for text in fix:
        assert text in message, (text, message)
    return message


def request(**fields: Any) -> dict[str, Any]:
    return {"model": SEEDANCE, "prompt": "A dancer spins in golden hour light", **fields}


# Real (tiny) media files, written byte for byte ------------------------------------------


def jpeg_bytes() -> bytes:
    """SOI, a JFIF APP0 segment and EOI: the header every JPEG file starts with."""
    app0 = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    return b"\xff\xd8" + b"\xff\xe0" + struct.pack(">H", len(app0) + 2) + app0 + b"\xff\xd9"


def wav_bytes() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x00" * 800)
    return buffer.getvalue()


def mp3_bytes() -> bytes:
    """Two silent MPEG-1 Layer III frames (128 kbit/s, 44.1 kHz: 417 bytes each)."""
    frame = b"\xff\xfb\x90\x64" + bytes(413)
    return frame * 2


@pytest.fixture
def media(tmp_path: Path) -> dict[str, Path]:
    files = {
        "png": ("still.png", PNG_BYTES),
        "jpeg": ("photo.jpg", jpeg_bytes()),
        "mp4": ("clip.mp4", video_bytes()),
        "wav": ("voice.wav", wav_bytes()),
        "mp3": ("song.mp3", mp3_bytes()),
        "text": ("notes.png", b"just some text, not an image\n"),
    }
    paths = {}
    for key, (name, data) in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        paths[key] = path
    return paths


# The model and its options ---------------------------------------------------------------


def test_an_unknown_model_is_refused_listing_the_known_models() -> None:
    message = only_problem(request(model="seedance-3"), "model", "unknown model 'seedance-3'")
    for model in known_models():
        assert model in message


@pytest.mark.parametrize(
    ("typed", "meant"),
    [("doubao-seedance-2-0-fast", "doubao-seedance-2-0-fast-260128"),
     ("doubao-seedance-2.0-720p", "doubao-seedance-2-0-720p"),
     ("Seedance-1-5-pro-with-audio", "seedance-1-5-pro-with-audio")],
)  # fmt: skip
def test_a_near_miss_model_name_is_answered_with_did_you_mean(typed: str, meant: str) -> None:
    only_problem(request(model=typed), "model", f"did you mean {meant!r}?", "known models:")


def test_a_model_name_far_from_every_model_gets_no_guess() -> None:
    message = only_problem(request(model="a-cartoon-please"), "model", "; known models:")
    assert "did you mean" not in message


def test_a_near_miss_kinovi_model_is_answered_with_did_you_mean() -> None:
    with pytest.raises(InvalidRequest) as info:
        validate_request({"model": "seedance-2.0", "prompt": "a fox"}, provider="kinovi")
    assert "did you mean 'seedance-20'?" in dict(info.value.problems)["model"]


def test_asking_audio_of_a_model_that_always_has_it_says_so() -> None:
    only_problem(request(model=SEEDANCE_15, generate_audio=True), "generate_audio",
                 "always generates audio")  # fmt: skip


def test_seconds_below_the_models_range_are_refused_with_the_range() -> None:
    only_problem(request(seconds=3), "seconds", "3", SEEDANCE, "use 4 to 15")


def test_seconds_above_the_models_range_are_refused_with_the_range() -> None:
    only_problem(request(model=SEEDANCE_15, seconds=13), "seconds", "use 4 to 12")


def test_seconds_above_fifteen_are_refused_for_every_model() -> None:
    for model in known_models():
        found = problems(request(model=model, seconds=MAX_SECONDS + 1))
        assert any(field == "seconds" and "use" in msg for field, msg in found), (model, found)


def test_seconds_given_as_a_string_are_accepted() -> None:
    assert validate_request(request(seconds="5")).seconds == 5
    assert validate_request(request(seconds=" 10 ")).seconds == 10


def test_seconds_that_are_not_whole_numbers_say_how_to_give_them() -> None:
    for bad in ("five", 5.5, True, "\uff15"):  # the last is a full-width 5
        only_problem(request(seconds=bad), "seconds", 'give whole seconds, e.g. 5 or "5"')


def test_a_ratio_the_model_does_not_offer_is_refused_listing_its_ratios() -> None:
    only_problem(
        request(model=SEEDANCE_15, ratio="21:9"), "ratio", "'21:9'", "use one of 16:9, 9:16, 1:1"
    )


def test_a_resolution_the_model_does_not_offer_is_refused_listing_its_resolutions() -> None:
    only_problem(
        request(model=SEEDANCE_15, resolution="1080p"), "resolution", "use one of 480p, 720p"
    )


def test_generate_audio_on_a_model_without_it_names_the_models_with_it() -> None:
    message = only_problem(
        request(model=HAPPYHORSE_R2V, images=[url("a.jpg")], generate_audio=True),
        "generate_audio",
        "cannot generate audio",
        "drop the option",
    )
    assert SEEDANCE in message
    assert HAPPYHORSE_R2V not in message.split("one of", 1)[1]


def test_generate_audio_false_on_a_model_without_it_is_harmless() -> None:
    valid = validate_request(request(model=HAPPYHORSE_R2V, images=[url("a.jpg")], seconds=5))
    assert valid.generate_audio is None
    validate_request(
        request(model=HAPPYHORSE_R2V, images=[url("a.jpg")], seconds=5, generate_audio=False)
    )


# Reference media counts and modes --------------------------------------------------------


def test_ten_images_are_refused_saying_how_many_to_remove() -> None:
    images = [url(f"{i}.jpg") for i in range(10)]
    only_problem(request(images=images), "images", "10 given", "at most 9", "remove 1")


def test_four_videos_are_refused() -> None:
    videos = [url(f"{i}.mp4") for i in range(4)]
    only_problem(request(videos=videos), "videos", "4 given", "at most 3", "remove 1")


def test_four_audio_tracks_are_refused() -> None:
    audio = [url(f"{i}.mp3") for i in range(4)]
    only_problem(request(audio=audio), "audio", "4 given", "at most 3", "remove 1")


def test_the_maximum_of_each_kind_is_accepted() -> None:
    valid = validate_request(
        request(
            images=[url(f"{i}.jpg") for i in range(9)],
            videos=[url(f"{i}.mp4") for i in range(3)],
            audio=[url(f"{i}.mp3") for i in range(3)],
        )
    )
    assert (len(valid.images), len(valid.videos), len(valid.audio)) == (9, 3, 3)


def test_videos_on_a_model_that_takes_none_name_the_models_that_do() -> None:
    message = only_problem(
        request(model=SEEDANCE_15, videos=[url("a.mp4")]), "videos", "takes no videos"
    )
    assert SEEDANCE in message


def test_reference_images_cannot_be_mixed_with_a_first_frame() -> None:
    only_problem(
        request(images=[url("a.jpg")], first_frame=url("b.jpg")),
        "images",
        "cannot be mixed with first/last-frame mode",
        "use either images or first_frame/last_frame",
    )


def test_a_first_frame_alone_is_accepted_and_sent_with_its_role() -> None:
    body = validate_request(request(first_frame=url("f.jpg"), last_frame=url("l.jpg"))).to_body()
    assert body["metadata"]["content"] == [
        {"type": "image_url", "image_url": {"url": url("f.jpg")}, "role": "first_frame"},
        {"type": "image_url", "image_url": {"url": url("l.jpg")}, "role": "last_frame"},
    ]


def test_a_model_that_needs_an_image_says_to_add_one() -> None:
    only_problem(request(model=HAPPYHORSE_R2V, seconds=5), "images", "needs at least one image")


# The prompt ------------------------------------------------------------------------------


def test_an_empty_prompt_is_refused() -> None:
    only_problem(request(prompt=""), "prompt", "is empty", "describe the clip")
    only_problem(request(prompt="   "), "prompt", "is empty")


def test_a_missing_prompt_is_required() -> None:
    only_problem({"model": SEEDANCE}, "prompt", "is required")


def test_a_prompt_of_4001_characters_is_refused_with_the_limit() -> None:
    only_problem(
        request(prompt="a" * (MAX_PROMPT_CHARS + 1)), "prompt", "4001 characters", "at most 4000"
    )


def test_a_prompt_of_exactly_4000_characters_is_accepted() -> None:
    assert len(validate_request(request(prompt="a" * MAX_PROMPT_CHARS)).prompt) == 4000


def test_citing_image2_with_one_image_is_refused() -> None:
    only_problem(
        request(prompt="@image1 meets @image2", images=[url("a.jpg")]),
        "prompt",
        "@image2",
        "only one image",
        "@image1",
    )


def test_citations_are_case_insensitive() -> None:
    valid = validate_request(request(prompt="@IMAGE1 and @Image1 dance", images=[url("a.jpg")]))
    assert valid.prompt.startswith("@IMAGE1")


def test_citing_video1_without_a_video_says_to_add_one() -> None:
    only_problem(request(prompt="moves like @video1"), "prompt", "@video1", "add a video")


def test_citing_audio1_without_audio_says_to_add_one() -> None:
    only_problem(request(prompt="synced to @audio1"), "prompt", "@audio1", "add an audio")


def test_citations_of_each_kind_resolve_against_that_kind() -> None:
    validate_request(
        request(
            prompt="@image2 performs @video1 to @audio1",
            images=[url("a.jpg"), url("b.jpg")],
            videos=[url("m.mp4")],
            audio=[url("s.mp3")],
        )
    )


# URLs and local files --------------------------------------------------------------------


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


# The shape of the input ------------------------------------------------------------------


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


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
_FIELD_NAMES = [*RenderRequest.model_fields, "extra"]


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


# The body --------------------------------------------------------------------------------


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


# Derived values --------------------------------------------------------------------------


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


# The allow-list of local media: the same wherever a request is checked ---------------------


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
