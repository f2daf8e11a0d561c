"""A storyboard clip that waits in line longer than its still's url lives uploads the stored
still and cites the upload: against real Redis, a real Celery worker and the simulator,
whose own still urls expire (``url_ttl``) and which refuses a clip citing an expired one.

The timers keep the real order, scaled down: the still's url is trusted for 2 s
(RELAYDANCE_INPUT_URL_TRUST_SECONDS) and lives 3 s at the provider, while the clip ahead of
it holds the key's one slot for a 5 s generation."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import httpx
import pytest

from tests.batch_fleet import Stack, _wait, live_batches, live_stack
from tests.batch_requests import req
from tests.fleet import wait_until
from worker.batch import batch_report, parse_records
from worker.job.engine import get_engine
from worker.job.record import Billing, Job, JobState

pytestmark = pytest.mark.integration

STILL = {"model": "grok-imagine-image", "prompt": "a lighthouse keyframe", "id": "k1"}


STACK_SETTINGS = {"RELAYDANCE_MAX_CONCURRENCY": "1", "RELAYDANCE_INPUT_URL_TRUST_SECONDS": "2"}


def expiring_urls(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """The stack, its simulator's urls living 3 s, its stills made in 1 s and its clips
    generating for 5 s."""
    for stacked in live_stack(stack, monkeypatch):
        stacked.sim.configure(gen_time_mean=5.0, gen_time_jitter=0.0, url_ttl=3.0,
                              image_gen_time=1.0)  # fmt: skip
        try:
            yield stacked
        finally:
            stacked.sim.configure(gen_time_mean=0.2, gen_time_jitter=0.1, url_ttl=3600.0,
                                  image_gen_time=0.0)  # fmt: skip


@pytest.fixture
def live(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    yield from expiring_urls(stack, monkeypatch)


def run_storyboard(live: Stack) -> tuple[Job, Job, Job]:
    """A still and a clip made from it, and a clip ahead enqueued while the still holds
    the key's one slot: it takes the slot when the still replies, so the clip made from the
    still waits for its 5 s generation. Their jobs once all three are done."""
    from tasks import enqueue_render, get_job, wait

    batches = live_batches()
    lines = [STILL, req("from the still", refs=["k1"])]
    sub = batches.submit(parse_records(lines), budget=5.0)
    _, rows = batch_report(batches, sub.batch_id)
    still_id, clip_id = (row.job_id or "" for row in rows)
    assert wait_until(lambda: get_job(still_id).state is JobState.SUBMITTING, timeout=20)
    ahead_id = enqueue_render(req("a clip ahead, holding the slot"))
    status = _wait(sub.batch_id, live, timeout=90)
    assert status.done == 2, live.log.read_text()[-3000:]
    assert wait(ahead_id, timeout=30).state is JobState.DONE
    return get_job(still_id), get_job(ahead_id), get_job(clip_id)


def test_a_clip_that_waited_past_its_stills_url_sends_the_stored_still_uploaded(
    live: Stack,
) -> None:
    still, ahead, clip = run_storyboard(live)
    assert clip.times["submitting"] > ahead.times["submitted"]  # it waited for the slot
    assert clip.times["submitting"] - still.times["generated"] > 3.0  # past the url's life
    (provider_url,) = get_engine().store.image_urls([still.id])[0] or []
    assert httpx.get(provider_url).status_code == 403  # expired: citing it would be refused
    (task,) = live.sim.tasks_for(clip.id)
    (cited,) = task["input_urls"]
    assert cited == get_engine().store.uploads(clip)[f"still://{still.id}/1"]
    assert cited not in str(get_engine().redis.hgetall(f"rd:job:{clip.id}"))  # kept apart
    assert cited.startswith(live.sim.url.removesuffix("/v1") + "/_files/uploads/")
    uploaded = httpx.get(cited).content
    assert hashlib.sha256(uploaded).hexdigest() == still.sha256  # the stored still, unchanged
    assert (clip.state, clip.billing) == (JobState.DONE, Billing.BILLED)
    stats = live.sim.stats()
    assert (stats["uploads"], stats["stale_inputs"], stats["submissions"]) == (1, 0, 2)
