"""Image requests: the image models in the catalogue, their validation (each error names the
field and the fix), their price per image and what ``relaydance models`` says of them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from config.settings import SettingsError, get_settings
from worker.cli.main import main
from worker.errors import InvalidRequest
from worker.render.image_catalogue import IMAGE_MODELS, is_image_model, known_image_models
from worker.render.image_request import ImageRequest, validate_image_request
from worker.render.pricing import IMAGE_DEFAULT_PRICE, estimate_cost, load_prices, price_table

STILL = {"model": "grok-imagine-image", "prompt": "a lighthouse at dusk, keyframe"}


@pytest.fixture
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in ("RELAYDANCE_PRICES", "RELAYDANCE_IMAGE_DEFAULT_PRICE"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def problems(data: Any, **kwargs: Any) -> dict[str, str]:
    with pytest.raises(InvalidRequest) as exc:
        validate_image_request(data, **kwargs)
    return dict(exc.value.problems)


def test_the_catalogue_holds_the_two_documented_image_models() -> None:
    assert known_image_models() == ["grok-imagine-image", "grok-imagine-image-quality"]
    assert all(m.default_size == "1024x1024" and m.min_n == 1 for m in IMAGE_MODELS.values())
    assert is_image_model("grok-imagine-image") and not is_image_model("grok-imagine-video")
    assert not is_image_model(None)


def test_a_valid_request_gets_the_models_default_size_and_one_image() -> None:
    request = validate_image_request(STILL)
    assert request == ImageRequest(model="grok-imagine-image", prompt=STILL["prompt"])
    assert request.to_body() == {**STILL, "n": 1, "size": "1024x1024"}
    two = validate_image_request({**STILL, "n": "2", "size": "1024x1024"})
    assert two.to_body()["n"] == 2
    assert two.fingerprint() != request.fingerprint()
    assert validate_image_request({**STILL, "size": "1024x1024"}).fingerprint() == (
        request.fingerprint()  # the default spelled out is the same request
    )
    assert request.summary() == "grok-imagine-image x1 'a lighthouse at dusk, keyframe'"


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        ({"model": "grok-imagine-imag"}, "model", "did you mean 'grok-imagine-image'"),
        ({"model": "grok-imagine-video"}, "model", "is a video model"),
        ({"prompt": ""}, "prompt", "describe the image"),
        ({"prompt": "x" * 4001}, "prompt", "at most 4000"),
        ({"n": 0}, "n", "ask for 1 to 4 images"),
        ({"n": 9}, "n", "ask for 1 to 4 images"),
        ({"n": True}, "n", "true/false"),
        ({"n": 2.5}, "n", "whole number"),
        ({"n": "1234567"}, "n", "far too many digits"),
        ({"size": "512x512"}, "size", "use one of 1024x1024"),
        ({"size": "big"}, "size", "is not WIDTHxHEIGHT"),
        ({"size": 1024}, "size", "WIDTHxHEIGHT"),
        ({"seconds": 5}, "seconds", "unknown field for an image request"),
    ],
)
def test_each_bad_field_is_named_with_its_fix(
    changes: dict[str, Any], field: str, fragment: str
) -> None:
    found = problems({**STILL, **changes})
    assert field in found and fragment in found[field], found


def test_every_problem_is_reported_at_once() -> None:
    found = problems({"model": "grok-imagine-image", "prompt": "", "n": 7, "size": "9x9"})
    assert set(found) == {"prompt", "n", "size"}
    assert "is required" in problems({"prompt": "x"})["model"]
    assert "give an object" in problems(["x"])["request"]


def test_a_kinovi_alias_cannot_generate_images() -> None:
    found = problems(STILL, provider="kinovi")
    assert "kinovi generates no images" in found["model"]
    assert "provider is relaydance" in found["model"]


def test_an_unpriced_image_model_counts_the_default_per_image(
    fresh_settings: pytest.MonkeyPatch,
) -> None:
    four = validate_image_request({**STILL, "n": 4})
    assert price_table().image_price("grok-imagine-image") == (IMAGE_DEFAULT_PRICE, False)
    assert estimate_cost(four) == pytest.approx(4 * IMAGE_DEFAULT_PRICE)
    fresh_settings.setenv("RELAYDANCE_IMAGE_DEFAULT_PRICE", "0.25")
    get_settings.cache_clear()
    assert estimate_cost(four) == pytest.approx(1.0)


def test_relaydance_prices_override_an_image_models_price_per_image(
    fresh_settings: pytest.MonkeyPatch,
) -> None:
    fresh_settings.setenv(
        "RELAYDANCE_PRICES",
        json.dumps({"grok-imagine-image": 0.02,
                    "grok-imagine-image-quality": {"usd_per_image": 0.07}}),
    )  # fmt: skip
    get_settings.cache_clear()
    table = price_table()
    assert table.image_price("grok-imagine-image") == (0.02, True)
    three = validate_image_request({**STILL, "model": "grok-imagine-image-quality", "n": 3})
    assert estimate_cost(three) == pytest.approx(0.21)
    with pytest.raises(KeyError):
        table.image_price("grok-imagine-video")


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"grok-imagine-image": {"usd_per_second": 1}}, "priced per image"),
        ({"grok-imagine-image": -1}, "must be a number >= 0"),
        ({"grok-imagine-imag": 1}, "known models: "),
    ],
)
def test_a_bad_image_price_is_refused_naming_the_setting(raw: Any, fragment: str) -> None:
    with pytest.raises(SettingsError) as exc:
        load_prices(raw)
    assert "RELAYDANCE_PRICES" in str(exc.value) and fragment in str(exc.value)
    if fragment == "known models: ":
        assert "grok-imagine-image-quality" in str(exc.value)


def test_the_default_image_price_is_a_setting_with_bounds(
    fresh_settings: pytest.MonkeyPatch,
) -> None:
    from config.settings import load_settings

    assert load_settings().image_default_price == IMAGE_DEFAULT_PRICE
    with pytest.raises(SettingsError, match="RELAYDANCE_IMAGE_DEFAULT_PRICE"):
        load_settings(image_default_price=-1)


def test_models_lists_the_image_models_with_sizes_n_and_the_unpublished_price(
    fresh_settings: pytest.MonkeyPatch,
) -> None:
    text = CliRunner().invoke(main, ["models"]).output
    assert "relaydance images (2 models" in text
    line = next(r for r in text.splitlines() if r.startswith("grok-imagine-image "))
    assert "1024x1024" in line and "1-4" in line and f"{IMAGE_DEFAULT_PRICE:.3f}*" in line
    assert "no image price is published" in text and "RELAYDANCE_IMAGE_DEFAULT_PRICE" in text
    rows = json.loads(CliRunner().invoke(main, ["models", "--json"]).output)["images"]
    quality = next(r for r in rows if r["model"] == "grok-imagine-image-quality")
    assert quality["sizes"] == ["1024x1024"] and (quality["min_n"], quality["max_n"]) == (1, 4)
    assert quality["price_published"] is False


def test_models_says_an_image_price_is_set_once_relaydance_prices_names_it(
    fresh_settings: pytest.MonkeyPatch,
) -> None:
    fresh_settings.setenv("RELAYDANCE_PRICES", '{"grok-imagine-image": 0.02}')
    get_settings.cache_clear()
    rows = json.loads(CliRunner().invoke(main, ["models", "--json"]).output)["images"]
    priced = {r["model"]: (r["usd_per_image"], r["price_published"]) for r in rows}
    assert priced["grok-imagine-image"] == (0.02, True)
    assert priced["grok-imagine-image-quality"] == (IMAGE_DEFAULT_PRICE, False)
