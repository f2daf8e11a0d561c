"""Every waiting job says what it waits for and until when, in words and in JSON."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from click.testing import CliRunner

from config.redis_url import describe_redis_url
from config.settings import get_settings
from tests.pipeline_helpers import make_job
from worker.cli.errors import redis_asked
from worker.cli.main import main
from worker.infra.timefmt import at, iso, relative, span
from worker.job.engine import Engine, get_engine, reset_engine
from worker.job.explain import ROWS, Explanation, Facts, explain, facts_for
from worker.job.reachability import ReceiverCheck
from worker.job.record import Job, JobState

RAW_EPOCH = re.compile(r"\b1\d{9}\.\d+")  # a bare epoch float, as status used to print


def test_spans_and_clock_times_read_as_people_say_them() -> None:
    assert span(250) == "4 m 10 s"
    assert span(42) == "42 s"
    assert span(7260) == "2 h 1 m"
    assert span(3 * 86400 + 4 * 3600) == "3 d 4 h"
    assert relative(1_000_250, now=1_000_000) == "in 4 m 10 s"
    assert relative(1_000_000, now=1_000_003) == "3 s ago"
    assert at(1_700_000_250.0, now=1_700_000_000.0) == "22:17:30 UTC (in 4 m 10 s)"
    assert iso(1_700_000_250.5) == "2023-11-14T22:17:30.500Z"


@pytest.fixture
def cli_env(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """The CLI and the producer API of this process on the test Redis, webhooks on."""
    for name in ("RELAYDANCE_API_KEY", "RELAYDANCE_API_KEYS", "RELAYDANCE_WEBHOOK_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("RELAYDANCE_WEBHOOK_BASE_URL", "http://127.0.0.1:9/hooks")
    monkeypatch.setenv("RELAYDANCE_WEBHOOK_SECRET", "test-status-secret")
    get_settings.cache_clear()
    reset_engine()
    yield get_engine()
    get_settings.cache_clear()
    reset_engine()


def _submitted(engine: Engine, *, due_in: float, **fields: Any) -> str:
    job_id = make_job(engine)
    engine.store.change(
        job_id, states=None, to=JobState.SUBMITTED, due=time.time() + due_in,
        set={"remote_task_id": "task_1", "remote_status": "submitted", **fields},
    )  # fmt: skip
    return job_id


def test_status_of_a_job_waiting_for_its_webhook_says_when_the_safety_poll_comes(
    cli_env: Engine,
) -> None:
    job_id = _submitted(cli_env, due_in=250)
    result = CliRunner().invoke(main, ["status", job_id])
    assert result.exit_code == 0, result.output
    assert "waiting for webhook, safety poll at " in result.output
    assert re.search(r"\(next check in 4 m (9|10) s\)", result.output), result.output
    assert "not polled yet" in result.output
    assert re.search(r"at queued: \d\d:\d\d:\d\d UTC \((now|\d+ s ago)\)", result.output)
    assert not RAW_EPOCH.search(result.output), result.output


def test_status_json_gives_every_time_as_epoch_and_iso_8601(cli_env: Engine) -> None:
    job_id = _submitted(cli_env, due_in=250)
    result = CliRunner().invoke(main, ["status", job_id, "--json"])
    assert result.exit_code == 0, result.output
    view = json.loads(result.output)
    waiting = view["waiting"]
    assert waiting["waiting_for"] == "webhook"
    assert abs(waiting["until"] - (time.time() + 250)) < 60
    assert waiting["until_iso"] == iso(waiting["until"])
    assert 0 < waiting["next_check_in_seconds"] <= 250
    assert view["times_iso"]["queued"] == iso(view["times"]["queued"])
    assert view["times_iso"]["submitted"].endswith("Z")


def test_a_job_in_line_says_its_place_and_the_slots_in_use(cli_env: Engine) -> None:
    for holder in ("a", "b"):
        cli_env.limits.acquire("default", holder, limit=2)
    cli_env.limits.acquire("default", "c", limit=2)  # first in line
    job_id = make_job(cli_env)
    assert not cli_env.limits.acquire("default", job_id, limit=2).granted
    cli_env.store.change(job_id, states=None, to=JobState.WAITING_FOR_SLOT, due=time.time() + 60)
    job = cli_env.store.get(job_id)
    assert job is not None
    found = explain(job, facts_for(cli_env, job))
    assert found.waiting_for == "slot"
    assert "number 2 in line, 2 of 10 slots in use" in found.text
    assert found.details["position"] == 2


def test_a_polled_job_says_what_the_provider_said_at_the_last_poll(cli_env: Engine) -> None:
    now = time.time()
    job_id = _submitted(cli_env, due_in=12, last_poll_at=repr(now - 5), remote_status="running")
    cli_env.store.change(job_id, states=None, incr={"poll_count": 3})
    job = cli_env.store.get(job_id)
    assert job is not None
    facts = replace(facts_for(cli_env, job, now=now), webhooks=False)
    found = explain(job, facts)
    assert found.waiting_for == "poll"
    assert "the provider said 'running' at the last poll" in found.text
    assert "(5 s ago); 3 polls" in found.text
    assert "next poll at" in found.text and "(next check in 12 s)" in found.text
    assert found.details["remote_status"] == "running"


def test_a_failing_receiver_self_check_is_noted_on_every_waiting_job(cli_env: Engine) -> None:
    job_id = _submitted(cli_env, due_in=600)
    job = cli_env.store.get(job_id)
    assert job is not None
    check = ReceiverCheck(False, "http://127.0.0.1:9/hooks/healthz", "unreachable", time.time())
    found = explain(job, replace(facts_for(cli_env, job), receiver=check, missed_webhooks=3))
    assert any("failed its self-check" in n and "unreachable" in n for n in found.notes)
    assert any("3 job(s) so far ended without their webhook" in n for n in found.notes)


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


def test_a_state_without_a_row_still_says_when_its_next_step_is_due() -> None:
    found = explain(_job("paused_by_operator", next_due=1_060.0), Facts(now=1_000.0))
    assert "paused_by_operator" in found.text and "(next check in 1 m)" in found.text


def test_a_lookup_that_finds_nothing_says_which_redis_it_asked(cli_env: Engine) -> None:
    result = CliRunner().invoke(main, ["status", "rdj_" + "0" * 32])
    assert result.exit_code == 2
    port = cli_env.settings.redis_url.rsplit(":", 1)[1].split("/")[0]  # type: ignore[union-attr]
    assert f"asked Redis at 127.0.0.1:{port} db 0 (REDIS_URL)" in result.output
    limits = CliRunner().invoke(main, ["limits"])
    assert "no key aliases configured or seen (asked Redis at 127.0.0.1:" in limits.output


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
