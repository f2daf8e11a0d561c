"""Batches with image lines, against real Redis, a real Celery worker and the simulator: an
image line is an image job like one enqueued alone, priced by the image default, counted
and reported with the batch's clips."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.batch_fleet import CLIP, Stack, _wait, batch_stack, live_batches, live_stack
from tests.batch_requests import req
from worker.batch import batch_report, parse_records
from worker.infra.redis_server import RedisServer
from worker.job.record import Billing, JobKind, JobState
from worker.render.pricing import IMAGE_DEFAULT_PRICE

pytestmark = pytest.mark.integration

STILL = {"model": "grok-imagine-image", "prompt": "a lighthouse keyframe"}


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from batch_stack(redis_server, tmp_path_factory)


@pytest.fixture
def live(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    yield from live_stack(stack, monkeypatch)


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
        assert (job.state, job.billing, len(job.image_urls)) == (
            JobState.DONE, Billing.BILLED, 1,
        )  # fmt: skip
        assert row.estimated_cost == pytest.approx(IMAGE_DEFAULT_PRICE)
        assert row.output_path and Path(row.output_path).read_bytes().startswith(b"\x89PNG")
    stats = live.sim.stats()
    assert (stats["image_requests"], stats["images_billed"], stats["submissions"]) == (2, 2, 1)
