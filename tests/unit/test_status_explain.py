"""What status says about a waiting job, worked out in-process: the words for spans and clock
times, a row for every state, and the Redis it asked described without a password.

The ``relaydance status`` command run against a real Redis is in
tests/integration/test_status.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from config.redis_url import describe_redis_url
from config.settings import get_settings
from worker.cli.errors import redis_asked
from worker.infra.timefmt import at, iso, relative, span
from worker.job.explain import ROWS, Explanation, Facts, explain
from worker.job.record import Job, JobKind, JobState


def test_spans_and_clock_times_read_as_people_say_them() -> None:
    assert span(250) == "4 m 10 s"
    assert span(42) == "42 s"
    assert span(7260) == "2 h 1 m"
    assert span(3 * 86400 + 4 * 3600) == "3 d 4 h"
    assert relative(1_000_250, now=1_000_000) == "in 4 m 10 s"
    assert relative(1_000_000, now=1_000_003) == "3 s ago"
    assert at(1_700_000_250.0, now=1_700_000_000.0) == "22:17:30 UTC (in 4 m 10 s)"
    assert iso(1_700_000_250.5) == "2023-11-14T22:17:30.500Z"


def _job(state: str, **fields: Any) -> Job:
    base: dict[str, Any] = {"id": "rdj_" + "1" * 32, "alias": "default", "created_at": 1.0,
                            "request": {"model": "m", "seconds": 5, "prompt": "p"}}  # fmt: skip
    # A state the enum does not know (an older or newer fleet's) is kept as its text.
    known = {s.value for s in JobState}
    return Job(state=JobState(state) if state in known else state, **{**base, **fields})  # type: ignore[arg-type]


def test_every_state_has_a_row_and_final_states_wait_for_nothing() -> None:
    assert set(ROWS) >= {s.value for s in JobState} | {"submit_unknown"}
    facts = Facts(now=1_000.0)
    for state in JobState:
        found = explain(_job(state.value, next_due=1_100.0), facts)
        assert isinstance(found, Explanation) and found.text
        assert (found.waiting_for is None) == (state.value in ("done", "failed", "canceled"))


def test_an_unknown_submission_says_why_who_decides_and_until_when_it_keeps_its_slot() -> None:
    bare = explain(_job("submit_unknown"), Facts(now=1_000.0))
    assert "may have reached the provider" in bare.text
    assert "slot has been given back" in bare.text  # the hold has passed: no due time
    assert bare.waiting_for == "operator" and "relaydance resubmit" in bare.text
    with_hooks = explain(
        _job("submit_unknown", next_due=1_300.0, unknown_since=990.0,
             error_message="transport: POST /v1/video/generations: ReadTimeout"),
        Facts(now=1_000.0, webhooks=True),
    )  # fmt: skip
    assert with_hooks.waiting_for == "webhook" and "adopts" in with_hooks.text
    assert "(in 5 m)" in with_hooks.text and "(10 s ago)" in with_hooks.text
    assert "evidence: transport: POST /v1/video/generations: ReadTimeout" in with_hooks.text


def test_an_unknown_image_submission_waits_for_the_operator_even_with_webhooks() -> None:
    image = _job("submit_unknown", kind=JobKind.IMAGE, error_message="server_error: HTTP 502")
    found = explain(image, Facts(now=1_000.0, webhooks=True))
    assert found.waiting_for == "operator" and "relaydance resubmit" in found.text
    assert "webhook" not in found.text


def test_a_state_without_a_row_still_says_when_its_next_step_is_due() -> None:
    found = explain(_job("paused_by_operator", next_due=1_060.0), Facts(now=1_000.0))
    assert "paused_by_operator" in found.text and "(next check in 1 m)" in found.text


def test_with_redis_unset_the_cli_names_the_default_it_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("RELAYDANCE_REDIS_URL", raising=False)
    get_settings.cache_clear()
    try:
        hint = redis_asked()
    finally:
        get_settings.cache_clear()
    assert "127.0.0.1:6379 db 0" in hint and "REDIS_URL is not set" in hint


def test_the_redis_description_never_shows_a_user_or_password() -> None:
    shown = describe_redis_url("rediss://admin:s3cret-pass@cache.example:6380/4")
    assert shown == "cache.example:6380 db 4"
    sentinel = "sentinel://:pw-1@s1:26379/2;sentinel://:pw-1@s2:26380/2"
    assert describe_redis_url(sentinel, master="mymaster") == (
        "sentinel master mymaster via s1:26379, s2:26380 db 2"
    )
