"""A worker SIGKILLed while its still's download thread is POSTing the clip made from it:
the clip is never paid twice. Real Redis, real workers (the second started by the test:
nothing restarts a worker here) and the simulator, every /v1 answer 3 s late so the kill
lands while the clip's POST is in flight.

A still's download runs its clip's submit in the same thread (worker/job/inputs.py,
READY_HERE): the clip's claim is the one money rule there, as for a submit task. The still's
download message was taken by the dead worker; the clip, claimed and perhaps created at the
provider, is the sweeper's (in the new worker): past its call deadline it is in doubt,
``submit_unknown``, never POSTed again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from simulator.testing import SimulatorProcess
from tests.batch_requests import req
from tests.fleet import Fleet, fleet_env, wait_until
from worker.job.record import Billing, JobState

pytestmark = pytest.mark.integration

STILL = {"model": "grok-imagine-image", "prompt": "a lighthouse keyframe", "id": "k1"}
S = JobState


@pytest.fixture
def fleet(redis_url: str, tmp_path: Path) -> Iterator[tuple[Fleet, SimulatorProcess]]:
    with SimulatorProcess(gen_time_mean=2.0, latency=3.0, webhooks=False) as sim:
        env = fleet_env(redis_url=redis_url, sim_url=sim.url, output_dir=tmp_path / "renders",
                        RELAYDANCE_HTTP_READ_TIMEOUT="10",
                        RELAYDANCE_HTTP_CALL_DEADLINE="10")  # fmt: skip
        (tmp_path / "logs").mkdir()
        fleet = Fleet(env, tmp_path / "logs", concurrency=4)
        with fleet.running():
            yield fleet, sim


def test_a_worker_killed_during_the_clips_post_in_its_stills_thread_never_pays_twice(
    fleet: tuple[Fleet, SimulatorProcess],
) -> None:
    from tasks import get_job
    from worker.batch import Batches, batch_report, parse_records
    from worker.job.engine import get_engine

    workers, sim = fleet
    batches = Batches(get_engine())
    sub = batches.submit(parse_records([STILL, req("from the still", refs=["k1"])]), budget=5)
    _, rows = batch_report(batches, sub.batch_id)
    still_id, clip_id = (row.job_id or "" for row in rows)
    assert wait_until(lambda: get_job(clip_id).state is S.SUBMITTING, timeout=30), workers.logs()
    assert get_job(still_id).state is S.DONE  # its clip's POST left from its thread
    workers.kill_worker()  # the POST in flight: its reply is lost with the worker
    workers.start_worker()
    assert wait_until(lambda: get_job(clip_id).state is S.SUBMIT_UNKNOWN, timeout=60), (
        get_job(clip_id).state, workers.logs(),
    )  # fmt: skip
    clip = get_job(clip_id)
    assert clip.billing is Billing.UNKNOWN and clip.submit_attempts == 1
    assert len(sim.tasks_for(clip_id)) <= 1  # made at most once, never POSTed again
    stats = sim.stats()
    assert (stats["image_requests"], stats["submissions"]) == (1, len(sim.tasks_for(clip_id)))
