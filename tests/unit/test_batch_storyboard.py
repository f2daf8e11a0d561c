"""Storyboard batch files, checked whole before anything is enqueued: image lines, and video
lines whose ``refs`` name the image lines their first reference images come from.

Each refusal is a line error in the format of every other (``line N: refs: ...``), naming
the ref and the fix. The plan's order and the budget's chains are in
tests/unit/test_batch_storyboard_plan.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from config.settings import get_settings
from tests.batch_requests import FAST, jsonl, req
from worker.batch import ParsedBatch, parse_records, parse_text
from worker.render.image_request import ImageRequest
from worker.render.request import RenderRequest

IMAGE = "grok-imagine-image"
KEYS = {
    "default": "studio-secret-YaP0G-VpZYeLRKc2miL91HvJJGQ5Vcra",
    "kin": {"key": "kin-secret-wRiCMgKG7gUWtZWnZ-YT3qOXlsnct_cB", "provider": "kinovi",
            "base_url": "https://kinovi.test/api/v1"},
}  # fmt: skip


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A RelayDance default alias and a Kinovi alias, ``kin``."""
    monkeypatch.setenv("RELAYDANCE_API_KEYS", json.dumps(KEYS))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def still(line_id: str, **extra: Any) -> dict[str, Any]:
    """An image line of one still, named ``line_id``."""
    return {"id": line_id, "model": IMAGE, "prompt": f"keyframe {line_id}", **extra}


def parse(lines: list[Any]) -> ParsedBatch:
    return parse_text(jsonl(lines), fmt="jsonl")


def refusals(parsed: ParsedBatch) -> dict[int, list[str]]:
    """Each refused line's ``field: message`` problems."""
    return {bad.line: [f"{name}: {msg}" for name, msg in bad.problems] for bad in parsed.invalid}


def test_a_video_line_takes_its_refs_stills_first_and_keeps_its_own_images() -> None:
    parsed = parse([
        req("@image1 turns to @image2, then @image3", id="v1", refs=["k1", "k2"],
            images=["https://a.test/own.png"]),
        still("k1"),
        still("k2", size="1024x1024"),
    ])  # fmt: skip
    assert parsed.ok, parsed.messages()
    video, first, second = parsed.lines
    assert isinstance(video.request, RenderRequest) and not video.is_image
    assert video.request.images == ("https://a.test/own.png",)  # the placeholders are gone
    assert (video.refs, video.ref_lines) == (("k1", "k2"), (2, 3))
    assert isinstance(first.request, ImageRequest) and first.is_image
    assert video.record()["refs"] == ["k1", "k2"]  # a schedule stores it and parses it again
    assert parse([video.record(), first.record(), second.record()]).ok


def test_request_objects_are_read_as_lines_of_their_kind() -> None:
    parsed = parse_records([ImageRequest(model=IMAGE, prompt="a still"),
                            RenderRequest(model=FAST, prompt="a clip")])  # fmt: skip
    assert parsed.ok, parsed.messages()
    assert [ln.is_image for ln in parsed.lines] == [True, False]


def test_a_model_that_needs_an_image_is_satisfied_by_a_ref() -> None:
    i2v = {"model": "happyhorse-1.0-i2v", "prompt": "@image1 gallops", "seconds": 5}
    parsed = parse([{**i2v, "refs": ["k1"]}, still("k1")])
    assert parsed.ok, parsed.messages()
    assert "needs at least one image" in " ".join(parse([i2v]).messages())


def test_csv_takes_refs_as_a_semicolon_list_and_image_lines_their_n_and_size() -> None:
    text = (
        "id,model,prompt,seconds,n,size,refs\n"
        f"k1,{IMAGE},a still,,1,1024x1024,\n"
        f"k2,{IMAGE},another,,,,\n"
        f"v1,{FAST},@image1 meets @image2,5,,,k1; k2\n"
    )
    parsed = parse_text(text, fmt="csv")
    assert parsed.ok, parsed.messages()
    assert parsed.lines[2].ref_lines == (2, 3)


@pytest.mark.parametrize(
    ("lines", "refused", "fragment"),
    [
        pytest.param(
            [req("a", refs=["nope"]), still("k1")], 1,
            "refs: 'nope' is no line's id; give the id of an image line", id="unknown-id",
        ),
        pytest.param(
            [req("a", id="v1", refs=["v2"]), req("b", id="v2", refs=["v1"])], 1,
            "refs: its refs wait on themselves (line 1 -> line 2 -> line 1); a line cannot "
            "wait for its own output", id="cycle",
        ),
        pytest.param(
            [req("a", id="v1", refs=["v1"])], 1,
            "refs: its refs wait on themselves (line 1 -> line 1)", id="self",
        ),
        pytest.param(
            [req("a", refs=["v2"]), req("b", id="v2")], 1,
            "refs: line 2 is a video line; refs name image lines", id="names-a-video",
        ),
        pytest.param(
            [req("a", refs=["k1"]), still("k1"), still("k1")], 1,
            "refs: 'k1' is the id of lines 2, 3; give each line its own id", id="duplicate-id",
        ),
        pytest.param(
            [req("a", refs=["k1"]), still("k1", prompt="")], 1,
            "refs: 'k1' is line 2, which is refused; fix line 2 first", id="names-refused",
        ),
        pytest.param(
            [req("a", refs=["k1"]), still("k1", n=2)], 1,
            "refs: line 2 makes 2 images and a ref takes one; set its n to 1", id="n-above-1",
        ),
        pytest.param(
            [{"model": "happyhorse-1.0-t2v", "prompt": "a", "seconds": 5, "refs": ["k1"]},
             still("k1")], 1,
            "refs: happyhorse-1.0-t2v takes no reference images, so no image line can feed "
            "it; drop refs, or use one of", id="model-takes-no-images",
        ),
        pytest.param(
            [req("a", refs=["k1"], images=[f"https://a.test/{n}.png" for n in range(9)]),
             still("k1")], 1,
            "refs: 1 refs and 9 images make 10 images; doubao-seedance-2-0-fast-260128 takes "
            "at most 9: remove 1", id="too-many",
        ),
        pytest.param(
            [{"model": "grok-imagine-video", "prompt": "a", "seconds": 5,
              "refs": ["k1", "k2"]}, still("k1"), still("k2")], 1,
            "refs: 2 refs and 0 images make 2 images; grok-imagine-video takes at most 1",
            id="too-many-for-the-model",
        ),
        pytest.param(
            [{"key": "kin", "model": "seedance-20", "prompt": "a", "seconds": 5,
              "refs": ["k1"]}, still("k1")], 1,
            "refs: Kinovi takes no uploads", id="kinovi-needs-an-upload",
        ),
        pytest.param(
            [still("k1", refs=["k2"]), still("k2")], 1,
            "refs: grok-imagine-image makes an image from its prompt alone and takes no "
            "reference images; drop refs from this image line", id="image-line-with-refs",
        ),
        pytest.param(
            [req("a", refs=["k1", "k1"]), still("k1")], 1,
            "refs: 'k1' is named twice", id="named-twice",
        ),
        pytest.param(
            [req("a", refs=[["k1"]]), still("k1")], 1,
            "refs: entry 1 is not a line id", id="not-an-id",
        ),
        pytest.param(
            [req("@image2 waves", refs=["k1"]), still("k1")], 1,
            "prompt: @image2 refers to image 2, which does not exist; there is only one image; "
            "cite it as @image1 (its ref counts as its first images)", id="citation",
        ),
    ],
)  # fmt: skip
def test_each_storyboard_mistake_is_a_line_error_naming_the_field_and_the_fix(
    lines: list[Any], refused: int, fragment: str
) -> None:
    parsed = parse(lines)
    messages = refusals(parsed).get(refused, [])
    assert any(fragment in message for message in messages), parsed.messages()
    assert f"line {refused}: " in " ".join(parsed.messages())
    assert refused not in [ln.line for ln in parsed.lines]


def test_a_ref_to_a_duplicated_id_is_refused_even_when_the_duplicate_is_skipped() -> None:
    parsed = parse([req("a", refs=["k1"]), still("k1"), still("k1")])
    assert [ln.line for ln in parsed.lines] == [2]  # line 3 is refused for its id
    assert "'k1' is line 2's id too" in " ".join(refusals(parsed)[3])
    assert 1 in refusals(parsed)  # not silently made from line 2's still


def test_every_line_of_a_storyboard_is_reported_at_once() -> None:
    parsed = parse([
        req("a", refs=["nope"]), still("k1", n=9),
        {"model": "happyhorse-1.0-t2v", "prompt": "b", "seconds": 5, "refs": ["k1"]},
        req("c", id="v1", refs=["v1"]),
    ])  # fmt: skip
    assert sorted(refusals(parsed)) == [1, 2, 3, 4]
    assert [m.split(":")[0] for m in parsed.messages()] == [
        "line 1", "line 2", "line 3", "line 4"]  # fmt: skip


def test_a_line_hears_of_every_bad_ref_at_once() -> None:
    parsed = parse([req("a", refs=["nope", "v2", "k1"]), req("b", id="v2"), still("k1", n=2)])
    assert refusals(parsed)[1] == [
        "refs: 'nope' is no line's id; give the id of an image line in this file",
        "refs: line 2 is a video line; refs name image lines (an image model such as "
        "grok-imagine-image): give an image line's id",
        "refs: line 3 makes 2 images and a ref takes one; set its n to 1, or split it into "
        "lines of one image each",
    ]
