"""Batches with a real worker and the simulator: skipped invalid lines, budgets reached mid-batch,
duplicates and reuse, cancel, resume and resubmission, reports and status.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.batch_fleet import (
    CLIP,
    Stack,
    _wait,
    fifty_lines_with_three_bad,
    live_batches,
)
from tests.batch_requests import jsonl, req
from tests.fleet import wait_until
from worker.batch import render_report
from worker.cli.batch import batch


def test_cli_skip_invalid_renders_the_rest_and_reports_every_line(
    live: Stack, tmp_path: Path
) -> None:
    file = tmp_path / "shots.jsonl"
    file.write_text(fifty_lines_with_three_bad())
    result = CliRunner().invoke(batch, ["submit", str(file), "--skip-invalid", "--wait",
                                        "--timeout", "90"])  # fmt: skip

    assert result.exit_code == 0, (result.output, live.log.read_text()[-3000:])
    batch_id = result.stdout.strip()
    assert "skipped 3 invalid lines" in result.stderr
    assert "47/50 done" in result.stderr  # the progress line, plain text off a terminal
    out = tmp_path / "report.csv"
    report = CliRunner().invoke(batch, ["report", batch_id, "--format", "csv", "-o", str(out)])
    assert report.exit_code == 0, report.output
    import csv

    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 50
    done = [r for r in rows if r["state"] == "done"]
    assert len(done) == 47 and all(Path(r["output_path"]).is_file() and r["sha256"] for r in done)
    assert all(r["seconds"] == "5" and float(r["estimated_cost"]) == CLIP for r in done)
    invalid = [r for r in rows if r["state"] == "invalid"]
    assert [r["line"] for r in invalid] == ["7", "20", "42"]
    assert "seconds: 40 is outside" in invalid[0]["error"]
    assert live.sim.stats()["submissions"] == 47


def test_a_budget_cap_reached_mid_batch_skips_the_rest_and_spend_stays_under_it(
    live: Stack,
) -> None:
    from tasks.batches import batch_report as report_of
    from tasks.batches import enqueue_batch

    sub = enqueue_batch([req(f"budgeted {i}") for i in range(8)], budget=3.0)
    status = _wait(sub.batch_id, live)
    assert status.counts == {"done": 4, "skipped_budget": 4}
    assert status.committed_usd == status.spent_usd == pytest.approx(4 * CLIP)
    assert status.spent_usd <= 3.0
    assert live.sim.stats()["submissions"] == 4
    _, rows = report_of(sub.batch_id)
    assert [r.state for r in rows] == ["done"] * 4 + ["skipped_budget"] * 4


def test_duplicate_lines_render_once_and_reuse_renders_nothing_again(live: Stack) -> None:
    from tasks.batches import enqueue_batch

    requests = [req("twin a"), req("twin b"), req("twin a"), req("twin b"), req("twin a")]
    first = enqueue_batch(requests)
    assert (first.unique, first.duplicates, first.enqueued) == (2, 3, 2)
    assert _wait(first.batch_id, live).done == 5
    assert live.sim.stats()["submissions"] == 2
    second = enqueue_batch(requests, reuse=True)
    assert (second.enqueued, second.reused) == (0, 2)
    status = _wait(second.batch_id, live)
    assert status.done == 5 and status.spent_usd == 0.0
    assert live.sim.stats()["submissions"] == 2
    without = enqueue_batch(requests)  # the control: no --reuse renders (and pays) again
    _wait(without.batch_id, live)
    assert live.sim.stats()["submissions"] == 4


def test_resume_after_canceling_half_a_batch_renders_only_the_canceled_half(
    live: Stack,
) -> None:
    from tasks import cancel
    from tasks.batches import enqueue_batch, resume_batch

    sub = enqueue_batch([req(f"half {i}") for i in range(10)], name="halves")
    before = live_batches().job_ids(sub.batch_id)
    canceled = {index for index in range(5) if cancel(before[index])}
    assert canceled  # the jobs were just enqueued: at least the first ones are still queued
    status = _wait(sub.batch_id, live)
    assert status.counts == {"done": 10 - len(canceled), "canceled": len(canceled)}
    result = CliRunner().invoke(batch, ["resume", "halves"])
    assert result.exit_code == 0, result.output
    status = _wait(sub.batch_id, live)
    assert status.counts == {"done": 10}
    after = live_batches().job_ids(sub.batch_id)
    assert {i for i in range(10) if after[i] != before[i]} == canceled
    remote = live.sim.stats()["submissions"]
    assert 10 <= remote <= 10 + len(canceled)  # a job canceled after submission was sent once
    assert resume_batch(sub.batch_id).enqueued == 0  # nothing left to re-queue


def test_batch_cancel_stops_running_jobs_and_a_resubmission_by_name_finishes_them(
    live: Stack, tmp_path: Path
) -> None:
    live.sim.configure(gen_time_mean=30.0)
    file = tmp_path / "slow.jsonl"
    file.write_text(jsonl([req(f"slow {i}") for i in range(3)]))
    result = CliRunner().invoke(batch, ["submit", str(file), "--name", "slow", "--json"])
    assert result.exit_code == 0, result.output
    batch_id = json.loads(result.stdout)["batch_id"]
    assert wait_until(lambda: live.sim.stats()["submissions"] == 3, timeout=30)
    result = CliRunner().invoke(batch, ["cancel", batch_id])
    assert result.exit_code == 0 and "canceled 3 jobs" in result.stdout
    status = json.loads(CliRunner().invoke(batch, ["status", batch_id, "--json"]).stdout)
    assert status["counts"] == {"canceled": 3} and status["finished"]
    # Sent to the provider before the cancel: possibly billed, so still committed.
    assert status["committed_usd"] == pytest.approx(3 * CLIP)
    live.sim.configure(gen_time_mean=0.2)
    again = CliRunner().invoke(batch, ["submit", str(file), "--name", "slow", "--wait"])
    assert again.exit_code == 0, (again.output, live.log.read_text()[-3000:])
    assert again.stdout.strip() == batch_id
    assert live.sim.stats()["submissions"] == 6


def test_failed_generations_are_not_billed_and_resubmitting_by_name_retries_them(
    live: Stack,
) -> None:
    from tasks.batches import enqueue_batch

    live.sim.configure(failure_rate=1.0)
    requests = [req(f"flaky {i}") for i in range(3)]
    sub = enqueue_batch(requests, name="flaky", budget=10)
    status = _wait(sub.batch_id, live)
    assert status.counts == {"failed": 3}
    assert status.committed_usd == 0.0  # every reservation was given back
    live.sim.configure(failure_rate=0.0)
    again = enqueue_batch(requests, name="flaky")
    assert again.batch_id == sub.batch_id and again.enqueued == 3
    status = _wait(sub.batch_id, live)
    assert status.counts == {"done": 3}
    assert status.committed_usd == pytest.approx(3 * CLIP)


def test_the_json_report_has_one_row_per_line_with_the_batch_summary(live: Stack) -> None:
    from tasks.batches import batch_report as report_of
    from tasks.batches import enqueue_batch

    sub = enqueue_batch([req("solo"), req("solo")])
    _wait(sub.batch_id, live)
    status, rows = report_of(sub.batch_id)
    body = json.loads(render_report(status, rows, fmt="json"))
    assert body["batch"]["counts"] == {"done": 2}
    assert [r["line"] for r in body["rows"]] == [1, 2]
    assert body["rows"][1]["note"] == "same request as line 1"
    assert body["rows"][0]["sha256"] == body["rows"][1]["sha256"]
    assert body["rows"][1]["estimated_cost"] == 0.0
