"""Batches with image lines, against real Redis, a real Celery worker and the simulator: an
image line is an image job like one enqueued alone, priced by the image default, counted
and reported with the batch's clips."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.batch_fleet import CLIP, Stack, _wait, live_batches
from tests.batch_requests import req
from tests.fleet import wait_until
from worker.batch import batch_report, parse_records
from worker.cli.batch import batch
from worker.job.engine import get_engine
from worker.job.record import Billing, JobKind, JobState
from worker.render.pricing import IMAGE_DEFAULT_PRICE

pytestmark = pytest.mark.integration

STILL = {"model": "grok-imagine-image", "prompt": "a lighthouse keyframe"}


def test_image_lines_become_image_jobs_priced_counted_and_reported(live: Stack) -> None:
    from tasks import get_job

    parsed = parse_records([STILL, req("a plain clip"), {**STILL, "prompt": "a second still"}])
    batches = live_batches()
    sub = batches.submit(parsed, budget=10.0)
    assert (sub.enqueued, sub.unique) == (3, 3)
    assert sub.estimated_usd == pytest.approx(2 * IMAGE_DEFAULT_PRICE + CLIP)
    status = _wait(sub.batch_id, live)
    assert status.done == 3, live.log.read_text()[-3000:]
    assert status.spent_usd == pytest.approx(2 * IMAGE_DEFAULT_PRICE + CLIP)
    _, rows = batch_report(batches, sub.batch_id)
    kinds = [get_job(row.job_id).kind for row in rows if row.job_id]
    assert kinds == [JobKind.IMAGE, JobKind.VIDEO, JobKind.IMAGE]
    for row in (rows[0], rows[2]):
        job = get_job(row.job_id or "")
        assert (job.state, job.billing, job.image_count) == (
            JobState.DONE, Billing.BILLED, 1,
        )  # fmt: skip
        assert row.estimated_cost == pytest.approx(IMAGE_DEFAULT_PRICE)
        assert row.output_path and Path(row.output_path).read_bytes().startswith(b"\x89PNG")
    stats = live.sim.stats()
    assert (stats["image_requests"], stats["images_billed"], stats["submissions"]) == (2, 2, 1)


def test_a_storyboard_ends_with_its_stills_and_clips_each_clip_citing_its_still(
    live: Stack,
) -> None:
    from tasks import get_job

    lines = [
        {**STILL, "id": "k1"}, req("from the first still", refs=["k1"]),
        {**STILL, "id": "k2", "prompt": "a harbour keyframe"},
        req("from the second still", refs=["k2"]), req("a plain clip"),
    ]  # fmt: skip
    batches = live_batches()
    sub = batches.submit(parse_records(lines), budget=2 * IMAGE_DEFAULT_PRICE + 3 * CLIP)
    assert (sub.enqueued, sub.skipped_budget) == (5, 0)
    status = _wait(sub.batch_id, live)
    assert status.done == 5, live.log.read_text()[-3000:]
    _, rows = batch_report(batches, sub.batch_id)
    jobs = {row.line: get_job(row.job_id or "") for row in rows}
    assert [jobs[n].kind for n in (1, 3)] == [JobKind.IMAGE, JobKind.IMAGE]
    for still, clip in ((1, 2), (3, 4)):
        (url,) = get_engine().store.image_urls([jobs[still].id])[0] or []
        assert jobs[clip].request["images"] == [f"still://{jobs[still].id}/1"]
        (received,) = live.sim.tasks_for(jobs[clip].id)  # the body the provider was sent
        assert received["input_urls"] == [url]
        assert jobs[clip].times["queued"] >= jobs[still].times["done"] - 0.01
        assert jobs[clip].billing is Billing.BILLED and jobs[clip].output_path
    assert jobs[5].request["images"] == [] and live.sim.tasks_for(jobs[5].id)[0]["input_urls"] == []
    assert [row.made_from for row in rows] == [None, "1", None, "3", None]  # the report
    shown = CliRunner().invoke(batch, ["status", sub.batch_id])
    assert "storyboard: line 2 (done) <- still line 1 (done)" in shown.stdout
    assert "storyboard: line 4 (done) <- still line 3 (done)" in shown.stdout
    stats = live.sim.stats()
    assert (stats["image_requests"], stats["submissions"]) == (2, 3)


def test_a_canceled_still_cancels_its_clip_unbilled_and_nothing_is_submitted(
    live: Stack,
) -> None:
    live.sim.configure(image_gen_time=3.0)
    try:
        _cancel_the_still_in_flight(live)
    finally:
        live.sim.configure(image_gen_time=0.0)


def _cancel_the_still_in_flight(live: Stack) -> None:
    from tasks import cancel, get_job

    batches = live_batches()
    lines = [{**STILL, "id": "k1"}, req("from the still", refs=["k1"])]
    sub = batches.submit(parse_records(lines), budget=1.0)
    _, rows = batch_report(batches, sub.batch_id)
    still, clip = rows[0].job_id or "", rows[1].job_id or ""
    assert get_job(clip).state is JobState.WAITING_FOR_INPUT
    assert wait_until(lambda: get_job(still).state is JobState.SUBMITTING, timeout=20)
    assert cancel(still)
    status = _wait(sub.batch_id, live)
    job = get_job(clip)
    assert (job.state, job.billing, job.error_code) == (
        JobState.CANCELED, Billing.NONE, "input_failed",
    )  # fmt: skip
    assert job.error_message == f"its still {still} canceled; the clip was never sent"
    assert live.sim.stats()["submissions"] == 0
    assert status.counts.get("canceled") == 2


def test_a_failed_still_cancels_its_clip_unbilled_and_nothing_is_submitted(live: Stack) -> None:
    from tasks import get_job

    live.sim.configure(url_ttl=0.001)  # the still's url is gone before it is stored
    try:
        batches = live_batches()
        lines = [{**STILL, "id": "k1"}, req("from the still", refs=["k1"])]
        sub = batches.submit(parse_records(lines), budget=1.0)
        status = _wait(sub.batch_id, live)
    finally:
        live.sim.configure(url_ttl=3600.0)
    _, rows = batch_report(batches, sub.batch_id)
    still, clip = get_job(rows[0].job_id or ""), get_job(rows[1].job_id or "")
    assert still.state is JobState.FAILED, live.log.read_text()[-3000:]
    assert (clip.state, clip.billing, clip.error_code) == (
        JobState.CANCELED, Billing.NONE, "input_failed",
    )  # fmt: skip
    assert clip.error_message == f"its still {still.id} failed; the clip was never sent"
    assert rows[1].billing == "none" and rows[1].made_from == "1"
    stats = live.sim.stats()
    assert (stats["image_requests"], stats["submissions"]) == (1, 0)
    assert status.counts == {"failed": 1, "canceled": 1}
    assert status.spent_usd == pytest.approx(IMAGE_DEFAULT_PRICE)  # the still was billed
    resumed = batches.resume(sub.batch_id, budget=2.0)  # the still and its clip again, linked
    assert resumed.enqueued == 2 and _wait(sub.batch_id, live).done == 2
    _, rows = batch_report(batches, sub.batch_id)
    still, clip = get_job(rows[0].job_id or ""), get_job(rows[1].job_id or "")
    assert clip.request["images"] == [f"still://{still.id}/1"]
    assert live.sim.stats()["submissions"] == 1
