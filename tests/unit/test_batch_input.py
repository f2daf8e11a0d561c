"""What a batch is made of, checked before anything is enqueued or paid: every bad line of
a JSONL or CSV file reported with its line, field and fix, and the price table the estimate
uses.

Budgets, duplicates, cancel and resume against a real Redis and worker are in
tests/integration/test_batches.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from config.settings import get_settings
from tests.batch_requests import FAST, jsonl, req
from worker.batch import (
    BatchFileError,
    parse_text,
    read_batch_file,
)
from worker.render.pricing import estimate_cost, load_prices, price_table
from worker.render.validation import validate_request


def test_every_bad_jsonl_line_is_reported_with_its_line_field_and_fix() -> None:
    text = jsonl([
        req("fine"),
        "",  # blank lines keep their number
        req("too long", seconds=30),
        "{not json",
        {"model": "no-such-model", "prompt": "x"},
        req("ok again"),
    ])  # fmt: skip
    parsed = parse_text(text, fmt="jsonl")
    assert [line.line for line in parsed.lines] == [1, 6]
    messages = parsed.messages()
    assert [m.split(":")[0] for m in messages] == ["line 3", "line 4", "line 5"]
    assert "seconds: 30 is outside" in messages[0] and "use 4 to 15" in messages[0]
    assert "not valid JSON" in messages[1] and "one JSON object per line" in messages[1]
    assert "model: unknown model 'no-such-model'; known models:" in messages[2]


def test_csv_rows_take_semicolon_lists_and_numbered_media_columns(tmp_path: Path) -> None:
    csv_text = (
        "model,prompt,seconds,images,generate_audio\n"
        f'{FAST},"@image1 and @image2, waving",5,https://a.test/1.png;https://a.test/2.png,true\n'
        f"{FAST},no refs,6,,\n"
    )
    parsed = parse_text(csv_text, fmt="csv")
    assert parsed.ok
    first, second = parsed.lines
    assert (first.line, second.line) == (2, 3)
    assert first.request.images == ("https://a.test/1.png", "https://a.test/2.png")
    assert first.request.generate_audio is True
    assert second.request.seconds == 6 and second.request.images == ()
    numbered = parse_text(
        f"model,prompt,image2,image1\n{FAST},@image2 behind @image1,https://b.test/2.png,"
        "https://b.test/1.png\n",
        fmt="csv",
    )
    assert numbered.lines[0].request.images == ("https://b.test/1.png", "https://b.test/2.png")


def test_csv_line_numbers_count_physical_lines_and_unknown_columns_are_refused(
    tmp_path: Path,
) -> None:
    text = f'model,prompt,seconds\n{FAST},"two\nlines",5\n{FAST},bad,99\n'
    parsed = parse_text(text, fmt="csv")
    assert [bad.line for bad in parsed.invalid] == [4]
    assert parsed.invalid[0].problems[0][0] == "seconds"
    with pytest.raises(BatchFileError) as exc:
        parse_text(f"model,prompt,colour\n{FAST},x,red\n", fmt="csv")
    assert "unknown column" in exc.value.problems[0][1]


def test_relative_media_paths_are_taken_from_the_batch_files_directory(tmp_path: Path) -> None:
    from simulator import PNG_BYTES

    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "cat.png").write_bytes(PNG_BYTES)
    file = tmp_path / "batch.jsonl"
    file.write_text(jsonl([req("@image1 blinks", images=["media/cat.png"])]))
    parsed = read_batch_file(file)
    assert parsed.ok, parsed.messages()
    assert parsed.lines[0].request.images == (str(tmp_path / "media" / "cat.png"),)


def test_prices_default_to_seed_credits_and_can_be_overridden_per_model_and_resolution(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast = validate_request(req("x"))
    standard = validate_request(
        {"model": "doubao-seedance-2-0-1080p", "prompt": "x", "seconds": 10}
    )
    monkeypatch.delenv("RELAYDANCE_PRICES", raising=False)
    get_settings.cache_clear()
    assert estimate_cost(fast) == pytest.approx(5 * 28 * 0.005)
    assert estimate_cost(standard) == pytest.approx(10 * 40 * 0.005)
    monkeypatch.setenv(
        "RELAYDANCE_PRICES",
        json.dumps({FAST: {"credits_per_second": 10, "resolutions": {"720p": 2}},
                    "doubao-seedance-2-0-1080p": 0.5}),
    )  # fmt: skip
    get_settings.cache_clear()
    try:
        assert price_table().estimate(fast) == pytest.approx(5 * 10 * 0.005 * 2)
        assert price_table().estimate(standard) == pytest.approx(5.0)
    finally:
        monkeypatch.delenv("RELAYDANCE_PRICES")
        get_settings.cache_clear()


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("{oops", "not valid JSON"),
        ('{"no-such-model": 1}', "unknown model 'no-such-model'"),
        (f'{{"{FAST}": -1}}', "must be a number >= 0"),
        (
            f'{{"{FAST}": {{"usd_per_second": 1, "resolutions": {{"4k": 2}}}}}}',
            "'4k' is not offered",
        ),
    ],
)
def test_a_bad_price_table_is_refused_naming_the_setting(raw: str, fragment: str) -> None:
    from config.settings import SettingsError

    with pytest.raises(SettingsError) as exc:
        load_prices(raw)
    assert "RELAYDANCE_PRICES" in str(exc.value) and fragment in str(exc.value)
