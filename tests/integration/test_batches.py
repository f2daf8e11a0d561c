"""Batches: budgets held under concurrency, duplicates rendered once, reuse across batches,
cancel and resume, reports; against real Redis, a real Celery worker and the simulator.
Batch files checked as a whole and the price table need none of them: they are in
tests/unit/test_batch_input.py.

Tests that need no worker use database 1 of the session's redis-server and an engine
whose ``send`` records messages instead of publishing them; the integration tests share
one worker (module scope) on database 0, which is cleaned key by key (a FLUSHALL would
also drop the broker's queue bindings the running worker relies on).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from config.settings import get_settings, load_settings
from tests.batch_fleet import CLIP, fifty_lines_with_three_bad
from tests.batch_requests import jsonl, req
from tests.pipeline_helpers import RecordingEngine, make_engine
from worker.batch import Batches, InvalidBatch, batch_report, parse_records
from worker.batch.budget import Claim, to_micros
from worker.cli.batch import batch
from worker.errors import InvalidRequest
from worker.infra.redis_server import RedisServer
from worker.job.engine import reset_engine
from worker.job.record import JobState

# Fixtures: no worker ---------------------------------------------------------------------


@pytest.fixture
def engine(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingEngine]:
    url = redis_server.url[: -len("/0")] + "/1"
    redis.Redis.from_url(url).flushdb()
    monkeypatch.delenv("RELAYDANCE_PRICES", raising=False)
    settings = load_settings(redis_url=url, api_key="sk-test")
    fake = make_engine(settings)
    yield fake
    fake.close()


def batch_of(n: int, *, start: int = 0) -> Any:
    return parse_records([req(f"clip {i}") for i in range(start, start + n)])


# Parsing -----------------------------------------------------------------------------------


# Pricing -----------------------------------------------------------------------------------


# Budget and enqueueing (no worker) ---------------------------------------------------------


def test_an_invalid_batch_enqueues_nothing(engine: RecordingEngine) -> None:
    parsed = parse_records([req("ok"), req("bad", seconds=99)])
    with pytest.raises(InvalidBatch) as exc:
        Batches(engine).submit(parsed)
    assert exc.value.lines[0].line == 2
    assert engine.redis.keys("*") == [] and engine.sent == []


def test_the_budget_cap_skips_every_line_after_the_first_that_would_exceed_it(
    engine: RecordingEngine,
) -> None:
    batches = Batches(engine)
    sub = batches.submit(batch_of(10), budget=4 * CLIP + 0.5)
    assert (sub.enqueued, sub.skipped_budget) == (4, 6)
    status = batches.status(sub.batch_id)
    assert status.counts == {"queued": 4, "skipped_budget": 6}
    assert status.committed_usd == pytest.approx(4 * CLIP) and status.committed_usd <= 3.3
    # One message nudges the chunk's four jobs (a worker sends each its chain).
    assert [(name, args) for name, args, _ in engine.sent] == [
        ("relaydance.resume_many", (list(batches.job_ids(sub.batch_id).values()),))
    ]
    _, rows = batch_report(batches, sub.batch_id)
    skipped = [row for row in rows if row.state == "skipped_budget"]
    assert [row.line for row in skipped] == [5, 6, 7, 8, 9, 10]
    assert all("budget ($3.30) would have been exceeded" in (row.error or "") for row in skipped)
    # The fix names this batch, ready to paste.
    assert all(f"relaydance batch resume {sub.batch_id} --budget USD" in (row.error or "")
               for row in skipped)  # fmt: skip


def test_failed_jobs_give_their_reservation_back_and_resume_uses_it(
    engine: RecordingEngine,
) -> None:
    batches = Batches(engine)
    sub = batches.submit(batch_of(6), budget=3 * CLIP)
    jobs = batches.job_ids(sub.batch_id)
    assert len(jobs) == 3
    engine.store.fail(jobs[0], code="generation_failed", message="not billed")
    status = batches.status(sub.batch_id)
    assert status.committed_usd == pytest.approx(2 * CLIP)
    batches.status(sub.batch_id)  # settling twice must not release twice
    assert batches.status(sub.batch_id).committed_usd == pytest.approx(2 * CLIP)
    again = batches.resume(sub.batch_id)
    assert again.enqueued == 1  # the failed line again, in line order; no room for more
    assert batches.status(sub.batch_id).committed_usd == pytest.approx(3 * CLIP)
    assert batches.job_ids(sub.batch_id)[0] != jobs[0]


def test_the_cap_holds_while_resumes_and_failures_race(engine: RecordingEngine) -> None:
    batches = Batches(engine)
    budget = 10.0  # 14 clips of $0.70
    sub = batches.submit(batch_of(40), budget=budget)
    meta = batches.store.key(sub.batch_id)
    cap = to_micros(budget)
    seen: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.append(int(engine.redis.hget(meta, "reserved_micros") or 0))

    def fail_some() -> None:
        for _ in range(15):
            for job_id in list(batches.job_ids(sub.batch_id).values())[:2]:
                engine.store.fail(job_id, code="generation_failed", message="x")
            batches.status(sub.batch_id)

    def resume_some() -> None:
        for _ in range(10):
            Batches(engine).resume(sub.batch_id)

    threads = [threading.Thread(target=watch), threading.Thread(target=fail_some)]
    threads += [threading.Thread(target=resume_some) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads[1:]:
        thread.join(timeout=60)
    stop.set()
    threads[0].join()
    assert seen and max(seen) <= cap
    status = batches.status(sub.batch_id)
    live = [
        job for job in batches.job_ids(sub.batch_id).values()
        if engine.store.get(job).state is not JobState.FAILED  # type: ignore[union-attr]
    ]  # fmt: skip
    assert status.committed_usd == pytest.approx(len(live) * CLIP)
    assert status.committed_usd <= budget


def test_a_claimed_job_that_was_never_created_is_lost_and_resume_recreates_it(
    engine: RecordingEngine,
) -> None:
    batches = Batches(engine)
    sub = batches.submit(batch_of(2), budget=2 * CLIP)
    # A submitter that died between its claim and writing the job: claim item 1 by hand.
    batches.store.redis.hdel(batches.store.key(sub.batch_id, "jobs"), "1")
    batches.store.redis.hincrby(
        batches.store.key(sub.batch_id), "reserved_micros", -to_micros(CLIP)
    )
    meta, jobs_key = batches.store.key(sub.batch_id), batches.store.key(sub.batch_id, "jobs")
    assert batches.ledger.claim(meta, jobs_key, [Claim(1, "", "rdj_never", to_micros(CLIP))]) == [
        "ok"
    ]
    status = batches.status(sub.batch_id)
    assert status.line_states[2] == "lost"
    assert status.committed_usd == pytest.approx(CLIP)  # the lost reservation came back
    assert batches.resume(sub.batch_id).enqueued == 1
    assert engine.store.get(batches.job_ids(sub.batch_id)[1]) is not None


def test_creating_a_batch_by_name_twice_at_once_creates_one(engine: RecordingEngine) -> None:
    parsed = batch_of(5)
    results: list[Any] = []

    def submit() -> None:
        results.append(Batches(engine).submit(parsed, name="nightly-1", resume_existing=False))

    threads = [threading.Thread(target=submit) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({r.batch_id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    assert len(engine.redis.keys("rd:job:*")) == 5
    assert sum(r.enqueued for r in results) == 5


def test_a_name_reused_with_other_requests_is_refused(engine: RecordingEngine) -> None:
    Batches(engine).submit(batch_of(2), name="weekly")
    with pytest.raises(InvalidRequest) as exc:
        Batches(engine).submit(batch_of(2, start=5), name="weekly")
    assert exc.value.problems[0][0] == "name"


def test_a_done_job_is_indexed_for_reuse_and_the_batch_on_done_is_told(
    engine: RecordingEngine,
) -> None:
    batches = Batches(engine)
    sub = batches.submit(batch_of(1), on_done="myapp.rendered")
    job_id = batches.job_ids(sub.batch_id)[0]
    engine.store._change(job_id, states=None, to=JobState.DONE)
    engine.sent.clear()
    batches.job_done({"job_id": job_id, "state": "done"})
    assert [(name, args) for name, args, _ in engine.sent] == [("myapp.rendered", ({"job_id": job_id, "state": "done",
                                                "batch_id": sub.batch_id},))]  # fmt: skip
    again = batches.submit(batch_of(1), reuse=True)
    assert (again.enqueued, again.reused) == (0, 1)
    assert batches.job_ids(again.batch_id)[0] == job_id
    assert batches.status(again.batch_id).spent_usd == 0.0


# CLI without a worker ----------------------------------------------------------------------


@pytest.fixture
def cli_env(engine: RecordingEngine, monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingEngine]:
    monkeypatch.setenv("REDIS_URL", str(engine.settings.redis_url))
    monkeypatch.setenv("RELAYDANCE_API_KEY", "sk-test")
    get_settings.cache_clear()
    reset_engine()
    yield engine
    get_settings.cache_clear()
    reset_engine()


def test_cli_refuses_an_invalid_file_with_exit_2_and_every_line(
    cli_env: RecordingEngine, tmp_path: Path
) -> None:
    file = tmp_path / "shots.jsonl"
    file.write_text(fifty_lines_with_three_bad())
    result = CliRunner().invoke(batch, ["submit", str(file)])
    assert result.exit_code == 2
    errors = [line.strip() for line in result.stderr.splitlines() if line.startswith("  line")]
    assert len(errors) == 3
    assert errors[0].startswith("line 7: seconds: 40 is outside") and "use 4 to 15" in errors[0]
    assert (
        errors[1].startswith("line 20: ratio: '5:4' is not offered") and "use one of" in errors[1]
    )
    assert errors[2].startswith("line 42: model: is required; give a model id")
    assert "3 invalid lines; nothing was enqueued" in result.stderr
    assert cli_env.redis.keys("*") == []


def test_cli_dry_run_prints_the_count_and_the_estimate_and_enqueues_nothing(
    cli_env: RecordingEngine, tmp_path: Path
) -> None:
    file = tmp_path / "shots.jsonl"
    file.write_text(jsonl([req("a"), req("b"), req("a")]))
    result = CliRunner().invoke(batch, ["submit", str(file), "--dry-run", "--budget", "1"])
    assert result.exit_code == 0, result.output
    assert "3 lines: 3 valid (2 distinct requests, 1 duplicates): estimated $1.40" in result.stdout
    assert "budget $1.00: 1 request ($0.70) would be submitted, 1 skipped_budget" in result.stdout
    assert cli_env.redis.keys("*") == []


def test_cli_dry_run_counts_and_lists_the_invalid_lines(
    cli_env: RecordingEngine, tmp_path: Path
) -> None:
    file = tmp_path / "shots.jsonl"
    file.write_text(jsonl([req("a"), req("b", seconds=99), req("c"), req("d", ratio="5:4")]))
    refused = CliRunner().invoke(batch, ["submit", str(file), "--dry-run"])
    assert refused.exit_code == 2  # as the submit itself would be
    assert "4 lines: 2 valid (2 distinct requests, 0 duplicates), 2 invalid" in refused.stdout
    assert refused.stderr.count("line 2: seconds: 99 is outside") == 1
    assert refused.stderr.count("line 4: ratio: '5:4'") == 1
    skipping = CliRunner().invoke(batch, ["submit", str(file), "--dry-run", "--skip-invalid"])
    assert skipping.exit_code == 0, skipping.output
    assert "2 invalid (left out: --skip-invalid): estimated $1.40" in skipping.stdout
    assert "would skip 2 invalid lines (--skip-invalid):" in skipping.stderr
    assert skipping.output.count("line 2: seconds: 99 is outside") == 1
    assert cli_env.redis.keys("*") == []


def test_cli_skip_invalid_lists_each_invalid_line_once(
    cli_env: RecordingEngine, tmp_path: Path
) -> None:
    file = tmp_path / "shots.jsonl"
    file.write_text(jsonl([req("a"), req("b", seconds=99), req("c")]))
    result = CliRunner().invoke(batch, ["submit", str(file), "--skip-invalid", "--budget", "5"])
    assert result.exit_code == 0, result.output
    assert result.output.count("line 2: seconds: 99 is outside") == 1
    assert result.output.count("invalid line") == 1


def test_cli_batch_status_counts_invalid_skipped_and_canceled_lines_apart(
    cli_env: RecordingEngine, tmp_path: Path
) -> None:
    file = tmp_path / "shots.jsonl"
    file.write_text(jsonl([req("a"), req("b", seconds=99), req("c"), req("d"), req("e")]))
    result = CliRunner().invoke(batch, ["submit", str(file), "--skip-invalid", "--budget", "1.5",
                                        "--json"])  # fmt: skip
    batch_id = json.loads(result.stdout)["batch_id"]
    Batches(cli_env).cancel(batch_id, cancel_job=cli_env.store.cancel)
    shown = CliRunner().invoke(batch, ["status", batch_id])
    assert shown.exit_code == 0, shown.output
    assert ("lines: 0 done, 0 running, 0 waiting, 0 unknown, 0 failed, 2 canceled, "
            "2 skipped (budget), 1 invalid") in shown.stdout  # fmt: skip
    assert "| 2 canceled | 2 skipped (budget) | 1 invalid |" in shown.stdout
    groups = json.loads(CliRunner().invoke(batch, ["status", batch_id, "--json"]).stdout)["groups"]
    assert (groups["canceled"], groups["skipped"], groups["invalid"]) == (2, 2, 1)


def test_a_template_that_would_collide_enqueues_nothing(
    cli_env: RecordingEngine, tmp_path: Path
) -> None:
    file = tmp_path / "shots.jsonl"
    file.write_text(jsonl([req("a boat"), req("A boat!", seconds=6)]))
    result = CliRunner().invoke(batch, ["submit", str(file), "--output-name", "{batch}/{slug}"])
    assert result.exit_code == 2
    assert (
        "line 2: output_name: '<batch id>/a-boat'" in result.stderr
        and "is line 1's name too" in result.stderr
    )
    result = CliRunner().invoke(batch, ["submit", str(file), "--output-name", "/abs/{line}"])
    assert result.exit_code == 2 and "would let two batches write the same file" in result.stderr
    assert cli_env.redis.keys("*") == []
    dry = CliRunner().invoke(batch, ["submit", str(file), "--dry-run", "--name", "wk",
                                     "--output-name", "{batch}/{line:03d}"])  # fmt: skip
    assert dry.exit_code == 0 and "clips named: wk/001.mp4, wk/002.mp4" in dry.stdout


def test_an_invalid_lines_row_keeps_its_id(engine: RecordingEngine) -> None:
    parsed = parse_records([req("fine", id="sh010"), req("too long", seconds=99, id="sh020")])
    sub = Batches(engine).submit(parsed, skip_invalid=True)
    _, rows = batch_report(Batches(engine), sub.batch_id)
    assert [(r.line, r.state, r.id) for r in rows] == [(1, "queued", "sh010"),
                                                      (2, "invalid", "sh020")]  # fmt: skip
