"""Image jobs end to end: the producer API and CLI, a real Celery worker and beat, Redis and
the simulator process. The stills stored are the PNGs the simulator served, and a reply
lost after the images were made leaves the job for the operator, paid once."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from simulator import image_sha256
from simulator.stills import image_png
from simulator.testing import SimulatorProcess
from tasks import enqueue_render, get_job, wait
from tests.fleet import Fleet, running_fleet, wait_until
from tests.jobs_page_helpers import TOKEN, client_for, engine_with_ui_token, signed_in
from worker.cli.main import main
from worker.infra.redis_server import RedisServer
from worker.job.engine import Engine, get_engine
from worker.job.record import Billing, JobKind, JobState
from worker.render.image_request import validate_image_request
from worker.render.pricing import IMAGE_DEFAULT_PRICE, estimate_cost
from worker.web.jobs_page import Credentials, JobsPage

pytestmark = pytest.mark.integration
STILLS = {"model": "grok-imagine-image", "prompt": "a lighthouse keyframe", "n": 2,
          "size": "1024x1024"}  # fmt: skip


@pytest.fixture
def fleet(redis_server: RedisServer, sim: SimulatorProcess, tmp_path: Path) -> Iterator[Fleet]:
    yield from running_fleet(redis_server.url, sim.url, tmp_path)


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
    (urls,) = get_engine().store.image_urls([job_id])  # kept apart from the record: signed
    assert [out["sha256"] for out in job.outputs] == [_served(url) for url in urls or []]
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


@pytest.fixture
def page_engine(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Engine]:
    yield from engine_with_ui_token(redis_url, tmp_path, monkeypatch)


def test_the_jobs_page_shows_an_image_job_its_stills_and_serves_the_first(
    page_engine: Engine,
) -> None:
    engine = page_engine
    request = validate_image_request(STILLS)
    job_id = "rdj_" + "ab" * 16
    engine.store.create(job_id, request=request.model_dump(mode="json"), alias="default",
                        cost=estimate_cost(request), extra={"kind": "image"})  # fmt: skip
    out = engine.settings.output_dir
    stills = [out / f"{job_id}-{n}.png" for n in (1, 2)]
    for n, path in enumerate(stills, start=1):
        path.write_bytes(image_png(f"img_{n}", 16, 16))
    outputs = [{"uri": p.as_uri(), "path": str(p), "sha256": "x"} for p in stills]
    engine.store._change(job_id, states=None, to=JobState.DONE, set={
        "output_path": str(stills[0]), "output_uri": stills[0].as_uri(),
        "outputs": json.dumps(outputs)})  # fmt: skip
    client = signed_in(client_for(JobsPage(Credentials(token=TOKEN))))
    listed = client.get("/ui/jobs?fragment=1").text
    assert "grok-imagine-image · 2 stills, 2 stored" in listed
    page = client.get(f"/ui/jobs/{job_id}").text
    assert "grok-imagine-image · 2 still(s)" in page
    assert all(p.as_uri() in page for p in stills)
    assert client.get(f"/ui/media/{job_id}.png").content == stills[0].read_bytes()
