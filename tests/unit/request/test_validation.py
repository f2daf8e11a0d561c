"""Render requests are refused before anything is spent, each problem naming its field and fix.

Every rule of :func:`worker.render.validation.validate_request` has its own test here, and the body
:meth:`RenderRequest.to_body` builds is pinned to the documented shape (seeds 001, 004).
"""

from __future__ import annotations

import pytest

from tests.unit.request.helpers import SEEDANCE, SEEDANCE_15, only_problem, problems, request, url
from worker.errors import InvalidRequest
from worker.render.catalogue import known_models
from worker.render.request import MAX_PROMPT_CHARS, MAX_SECONDS
from worker.render.validation import validate_request

HAPPYHORSE_R2V = "happyhorse-1.0-r2v"  # 5-10 s, images only, no frames


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
