"""Image jobs end to end: the producer API and CLI, a real Celery worker and beat, Redis and
the simulator process. The stills stored are the PNGs the simulator served, and a reply
lost after the images were made leaves the job for the operator, paid once."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from simulator import image_sha256
from simulator.testing import SimulatorProcess
from tasks import enqueue_render, get_job, wait
from tests.fleet import Fleet, fleet_env, use_env, wait_until
from worker.cli.main import main
from worker.infra.redis_server import RedisServer
from worker.job.record import Billing, JobKind, JobState
from worker.render.pricing import IMAGE_DEFAULT_PRICE

pytestmark = pytest.mark.integration
STILLS = {"model": "grok-imagine-image", "prompt": "a lighthouse keyframe", "n": 2,
          "size": "1024x1024"}  # fmt: skip


@pytest.fixture
def fleet(redis_server: RedisServer, sim: SimulatorProcess, tmp_path: Path) -> Iterator[Fleet]:
    redis.Redis.from_url(redis_server.url).flushall()
    env = fleet_env(redis_url=redis_server.url, sim_url=sim.url, output_dir=tmp_path / "renders")
    logs = tmp_path / "logs"
    logs.mkdir()
    fleet = Fleet(env, logs, beat=True)
    with use_env(env):
        fleet.start()
        try:
            yield fleet
        finally:
            fleet.stop()


def _served(url: str) -> str:
    """The sha256 of the PNG the simulator serves at ``url`` (its id names it)."""
    return image_sha256(url.split("/images/")[1].split(".png")[0], 1024, 1024)


def test_an_image_job_ends_as_the_pngs_the_simulator_served(
    fleet: Fleet, sim: SimulatorProcess
) -> None:
    job_id = enqueue_render(STILLS)
    job = wait(job_id, timeout=60)
    assert job.state is JobState.DONE, (job.error_message, fleet.logs())
    assert (job.kind, job.billing, job.poll_count) == (JobKind.IMAGE, Billing.BILLED, 0)
    assert job.cost == pytest.approx(2 * IMAGE_DEFAULT_PRICE)
    assert [out["sha256"] for out in job.outputs] == [_served(url) for url in job.image_urls]
    for out in job.outputs:
        assert hashlib.sha256(Path(out["path"]).read_bytes()).hexdigest() == out["sha256"]
        assert Path(out["path"]).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        assert Path(out["path"]).with_suffix(".json").is_file()  # its manifest beside it
    assert "submitted" not in job.times and "generated" in job.times  # no poll step
    stats = sim.stats()
    assert (stats["image_requests"], stats["images_billed"], stats["image_paid_twice"]) == (1, 2, 0)
    assert stats["submissions"] == 0  # nothing went to the video endpoint


def test_render_wait_prints_each_stored_still_and_the_jobs_list_counts_them(
    fleet: Fleet, sim: SimulatorProcess
) -> None:
    args = ["render", "--model", "grok-imagine-image", "--prompt", "a keyframe", "--n", "2"]
    result = CliRunner().invoke(main, [*args, "--wait", "--timeout", "60"])
    assert result.exit_code == 0, (result.output, fleet.logs())
    paths = [Path(line) for line in result.stdout.splitlines()]
    assert len(paths) == 2 and all(p.suffix == ".png" and p.is_file() for p in paths)
    listing = CliRunner().invoke(main, ["jobs"])
    assert "2 stills, 2 stored" in listing.output, listing.output


def test_a_lost_image_reply_is_submit_unknown_and_paid_once(
    fleet: Fleet, sim: SimulatorProcess
) -> None:
    sim.configure(lost_response_rate=1.0)  # the images are made and billed, the reply lost
    job_id = enqueue_render(STILLS)
    assert wait_until(lambda: get_job(job_id).state is JobState.SUBMIT_UNKNOWN, timeout=30), (
        get_job(job_id).state, fleet.logs(),
    )  # fmt: skip
    job = get_job(job_id)
    assert job.billing is Billing.UNKNOWN and job.possibly_billed == 1
    assert job.error_code == "submit_unknown" and "502" in (job.error_message or "")
    sim.configure(lost_response_rate=0.0)
    assert not wait_until(lambda: get_job(job_id).state is not JobState.SUBMIT_UNKNOWN,
                          timeout=5)  # sweeps pass; it waits for the operator  # fmt: skip
    stats = sim.stats()
    assert (stats["image_requests"], stats["images_billed"]) == (1, 2)
