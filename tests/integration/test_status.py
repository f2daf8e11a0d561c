"""Every waiting job says what it waits for and until when, in words and in JSON, as
``relaydance status`` prints it from a real Redis.

The wording worked out from a job alone is in tests/unit/test_status_explain.py.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from click.testing import CliRunner

from config.settings import get_settings
from tests.pipeline_helpers import make_job
from worker.cli.main import main
from worker.infra.timefmt import iso
from worker.job.engine import Engine, get_engine, reset_engine
from worker.job.explain import explain, facts_for
from worker.job.reachability import ReceiverCheck
from worker.job.record import JobState

RAW_EPOCH = re.compile(r"\b1\d{9}\.\d+")  # a bare epoch float, as status used to print


@pytest.fixture
def cli_env(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """The CLI and the producer API of this process on the test Redis, webhooks on."""
    for name in ("RELAYDANCE_API_KEY", "RELAYDANCE_API_KEYS", "RELAYDANCE_WEBHOOK_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("RELAYDANCE_WEBHOOK_BASE_URL", "http://127.0.0.1:9/hooks")
    monkeypatch.setenv(
        "RELAYDANCE_WEBHOOK_SECRET", "test-status-secret-13Sj09lc6gElcg7RcmopVurNHzap4Wmw"
    )
    get_settings.cache_clear()
    reset_engine()
    yield get_engine()
    get_settings.cache_clear()
    reset_engine()


def _submitted(engine: Engine, *, due_in: float, **fields: Any) -> str:
    job_id = make_job(engine)
    engine.store._change(
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
    cli_env.store._change(job_id, states=None, to=JobState.WAITING_FOR_SLOT, due=time.time() + 60)
    job = cli_env.store.get(job_id)
    assert job is not None
    found = explain(job, facts_for(cli_env, job))
    assert found.waiting_for == "slot"
    assert "number 2 in line, 2 of 10 slots in use" in found.text
    assert found.details["position"] == 2


def test_a_polled_job_says_what_the_provider_said_at_the_last_poll(cli_env: Engine) -> None:
    now = time.time()
    job_id = _submitted(cli_env, due_in=12, last_poll_at=repr(now - 5), remote_status="running")
    cli_env.store._change(job_id, states=None, incr={"poll_count": 3})
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


def test_a_lookup_that_finds_nothing_says_which_redis_it_asked(cli_env: Engine) -> None:
    result = CliRunner().invoke(main, ["status", "rdj_" + "0" * 32])
    assert result.exit_code == 2
    port = cli_env.settings.redis_url.rsplit(":", 1)[1].split("/")[0]  # type: ignore[union-attr]
    assert f"asked Redis at 127.0.0.1:{port} db 0 (REDIS_URL)" in result.output
    limits = CliRunner().invoke(main, ["limits"])
    assert "no key aliases configured or seen (asked Redis at 127.0.0.1:" in limits.output
