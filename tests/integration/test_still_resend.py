"""A storyboard clip whose still's url died while the fleet still trusted it: the provider
refuses the POST (400, nothing created), the clip uploads its stored still and is sent once
more, paid once. Real Redis, a real Celery worker and the simulator, whose still urls live
3 s while the fleet trusts them for 60 s (RELAYDANCE_INPUT_URL_TRUST_SECONDS set too high
for this provider), and the clip ahead holds the key's one slot for a 5 s generation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.batch_fleet import Stack
from tests.integration.test_still_upload import expiring_urls, run_storyboard
from worker.job.engine import get_engine
from worker.job.record import Billing, JobState

pytestmark = pytest.mark.integration


STACK_SETTINGS = {"RELAYDANCE_MAX_CONCURRENCY": "1", "RELAYDANCE_INPUT_URL_TRUST_SECONDS": "60"}


@pytest.fixture
def live(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    yield from expiring_urls(stack, monkeypatch)


def test_a_clip_refused_for_a_dead_still_url_is_sent_once_more_with_the_still_uploaded(
    live: Stack,
) -> None:
    still, _, clip = run_storyboard(live)
    assert clip.inputs_resent and clip.uploaded == [f"still://{still.id}/1"]
    (task,) = live.sim.tasks_for(clip.id)  # one task: the refused POST created none
    assert task["input_urls"] == [get_engine().store.uploads(clip)[f"still://{still.id}/1"]]
    assert (clip.state, clip.billing) == (JobState.DONE, Billing.BILLED)
    stats = live.sim.stats()
    assert (stats["stale_inputs"], stats["uploads"], stats["submissions"]) == (1, 1, 2)
