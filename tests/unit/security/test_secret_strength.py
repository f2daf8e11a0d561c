"""Secrets that guard the fleet carry at least 128 bits, or the process does not start.

Each row names a weak value someone could plausibly configure; every one is refused for
every secret setting, with a message that names the variable and the command that makes
a strong one, and never repeats the value. Generated secrets of 32 random bytes always
pass (a seeded sample of each generator, so the test is the same on every run).
"""

from __future__ import annotations

import base64
import random

import pytest

from config.secret_strength import GENERATE, MIN_BITS, estimate_bits
from config.settings import SettingsError, env_name, load_settings

SECRET_SETTINGS = ("webhook_secret", "metrics_token", "ui_token", "ui_password")
WEAK = {
    "two-characters": "k7",
    "a-word": "changeme",
    "a-classic": "hunter2",
    "words-and-dashes": "test-webhook-secret",
    "the-examples-old-placeholder": "change-me-to-a-long-random-string",
    "words-and-a-year": "my-super-secret-webhook-key-2024",
    "four-words": "correct-horse-battery-staple-extra",
    "one-letter-repeated": "a" * 45,
    "the-alphabet-then-digits": "abcdefghijklmnopqrstuvwxyz0123456789",
    "a-password-twice": "Password1234567890Password1234567890",
    "digits-counting": "0123456789" * 4,
    "a-16-byte-hex-secret": "9f86d081884c7d659a2feaa0c55ad015",
}


def _extra(field: str) -> dict[str, str]:
    # The UI password goes with a user; everything else stands alone.
    return {"ui_user": "ops"} if field == "ui_password" else {}


@pytest.mark.parametrize("field", SECRET_SETTINGS)
@pytest.mark.parametrize("value", list(WEAK.values()), ids=list(WEAK))
def test_a_weak_secret_is_refused_naming_the_variable_and_the_fix(field: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(**{field: value}, **_extra(field))
    message = str(caught.value)
    assert f"{env_name(field)}: too weak" in message
    assert GENERATE in message
    assert f"at least {MIN_BITS}" in message
    assert value not in message


@pytest.mark.parametrize("field", SECRET_SETTINGS)
def test_a_generated_secret_is_taken(field: str) -> None:
    strong = base64.urlsafe_b64encode(random.Random(field).randbytes(32)).decode().rstrip("=")
    settings = load_settings(**{field: strong}, **_extra(field))
    assert getattr(settings, field).get_secret_value() == strong


GENERATORS = {
    "token_urlsafe(32)": lambda r: base64.urlsafe_b64encode(r.randbytes(32)).decode().rstrip("="),
    "openssl rand -base64 32": lambda r: base64.b64encode(r.randbytes(32)).decode(),
    "openssl rand -hex 32": lambda r: r.randbytes(32).hex(),
    "base32 of 32 bytes": lambda r: base64.b32encode(r.randbytes(32)).decode(),
}


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_every_32_byte_random_secret_scores_well_above_the_line(name: str) -> None:
    rng = random.Random(name)
    scores = [estimate_bits(GENERATORS[name](rng)) for _ in range(3000)]
    assert min(scores) >= MIN_BITS + 10


def test_a_16_byte_secret_is_below_the_line_whatever_its_draw() -> None:
    rng = random.Random(16)
    assert max(estimate_bits(rng.randbytes(16).hex()) for _ in range(1000)) < MIN_BITS


def test_words_count_as_words_however_they_are_joined() -> None:
    # Four words: about 64 bits against a dictionary, whether dashes, case or nothing join them.
    for phrase in ("correct-horse-battery-staple", "CorrectHorseBatteryStaple",
                   "correcthorsebatterystaple", "CORRECT_HORSE_BATTERY_STAPLE"):  # fmt: skip
        assert estimate_bits(phrase) < 100, phrase
