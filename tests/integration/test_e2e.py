"""End to end: the producer API and CLI, a real Celery worker and beat, Redis, the simulator."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from simulator import PNG_BYTES, VIDEO_SHA256
from simulator.testing import SimulatorProcess
from tasks import enqueue_render, get_job, wait
from tests.fleet import Fleet, fleet_env, running_fleet, wait_until
from worker.cli.main import main
from worker.errors import InvalidRequest
from worker.infra.redis_server import RedisServer
from worker.job.record import JobState

pytestmark = pytest.mark.integration
MODEL = "doubao-seedance-2-0-fast-260128"


@pytest.fixture
def fleet(redis_server: RedisServer, sim: SimulatorProcess, tmp_path: Path) -> Iterator[Fleet]:
    yield from running_fleet(redis_server.url, sim.url, tmp_path)


def _sha256(path: str | None) -> str:
    assert path
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_text_to_video_renders_end_to_end(fleet: Fleet, sim: SimulatorProcess) -> None:
    job_id = enqueue_render({"model": MODEL, "prompt": "a lighthouse at dusk", "seconds": 5})
    job = wait(job_id, timeout=60)
    assert job.state is JobState.DONE, (job.error_message, fleet.logs())
    assert _sha256(job.output_path) == VIDEO_SHA256
    assert sim.stats()["submissions"] == 1


def test_image_to_video_uploads_then_renders(
    fleet: Fleet, sim: SimulatorProcess, tmp_path: Path
) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(PNG_BYTES)
    job_id = enqueue_render(
        {"model": "seedance-1-5-pro-with-audio", "prompt": "@image1 turns its head",
         "images": [str(image)]}
    )  # fmt: skip
    job = wait(job_id, timeout=60)
    assert job.state is JobState.DONE, (job.error_message, fleet.logs())
    assert _sha256(job.output_path) == VIDEO_SHA256
    assert sim.stats()["uploads"] == 1


def test_a_worker_killed_mid_poll_is_replaced_and_the_job_finishes_once(
    fleet: Fleet, sim: SimulatorProcess
) -> None:
    sim.configure(gen_time_mean=4.0)
    job_id = enqueue_render({"model": MODEL, "prompt": "a slow render", "seconds": 5})
    assert wait_until(lambda: get_job(job_id).poll_count >= 1, timeout=30)
    fleet.kill_worker()  # its countdown message for the next poll dies with it
    fleet.start_worker()
    job = wait(job_id, timeout=60)
    assert job.state is JobState.DONE, (job.error_message, fleet.logs())
    assert sim.stats()["submissions"] == 1
    assert job.seq >= 1  # the sweeper resumed it
    out = Path(job.output_path or "").parent
    assert not list(out.glob("*.part"))


def test_a_worker_killed_mid_download_leaves_no_partial_file_under_the_final_name(
    fleet: Fleet, sim: SimulatorProcess
) -> None:
    size = 8 * 1024 * 1024
    sim.configure(video_bytes=size, download_rate=2 * 1024 * 1024)  # about 4 s per download
    job_id = enqueue_render({"model": MODEL, "prompt": "a big clip", "seconds": 5})
    out = fleet.log_dir.parent / "renders"
    assert wait_until(lambda: list(out.glob(f".{job_id}.*.part")), timeout=30), fleet.logs()
    assert wait_until(lambda: any(p.stat().st_size > 0 for p in out.glob("*.part")), timeout=10)
    fleet.kill_worker()
    assert get_job(job_id).state is JobState.DOWNLOADING
    assert not (out / f"{job_id}.mp4").exists()
    sim.configure(download_rate=0.0)
    fleet.start_worker()
    job = wait(job_id, timeout=60)
    assert job.state is JobState.DONE, (job.error_message, fleet.logs())
    final = out / f"{job_id}.mp4"
    assert final.stat().st_size == size
    assert job.size == size
    assert hashlib.sha256(final.read_bytes()).hexdigest() == job.sha256
    assert not list(out.glob("*.part"))
    stats = sim.stats()
    assert stats["submissions"] == 1
    assert stats["downloads"] == 2  # the killed one and the one that finished


def test_a_poll_reschedules_itself_as_often_as_needed_without_the_sweeper(
    redis_server: RedisServer, sim: SimulatorProcess, tmp_path: Path
) -> None:
    redis.Redis.from_url(redis_server.url).flushall()
    sim.configure(gen_time_mean=2.5)
    env = fleet_env(redis_url=redis_server.url, sim_url=sim.url, output_dir=tmp_path / "out",
                    RELAYDANCE_POLL_INTERVAL_MAX="0.3")  # fmt: skip
    (tmp_path / "logs").mkdir()
    fleet = Fleet(env, tmp_path / "logs", beat=False)  # nothing else would rescue a dropped poll
    with fleet.running():
        job = wait(enqueue_render({"model": MODEL, "prompt": "patience"}), timeout=60)
    assert job.state is JobState.DONE, fleet.logs()
    assert job.poll_count > 4  # Celery's default retry limit (3) must not cut the loop
    assert job.seq == 0


def test_bad_input_enqueues_nothing_and_names_the_field(
    fleet: Fleet, redis_server: RedisServer
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    with pytest.raises(InvalidRequest) as caught:
        enqueue_render({"model": MODEL, "prompt": "@image1 dances", "seconds": 40})
    fields = [field for field, _ in caught.value.problems]
    assert fields == ["seconds", "prompt"]
    result = CliRunner().invoke(main, ["render", "--model", "nope", "--prompt", "x"])
    assert result.exit_code == 2
    assert "model: unknown model 'nope'" in result.output
    assert client.keys("rd:job:*") == []
    assert client.llen("relaydance") == 0


def test_cli_render_wait_prints_the_output_path(fleet: Fleet) -> None:
    result = CliRunner().invoke(
        main, ["render", "--model", MODEL, "--prompt", "a kite", "--wait", "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["state"] == "done"
    assert summary["sha256"] == VIDEO_SHA256
    status = CliRunner().invoke(main, ["status", summary["job_id"], "--json"])
    assert json.loads(status.stdout)["output_path"] == summary["output_path"]


def test_cli_dry_run_prints_the_body_and_cost_without_enqueuing(redis_server: RedisServer) -> None:
    result = CliRunner().invoke(
        main,
        ["render", "--model", "doubao-seedance-2-0-1080p", "--prompt", "a dancer", "--seconds", "10",
         "--ratio", "16:9", "--generate-audio", "--dry-run", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["body"]["seconds"] == "10"
    assert out["body"]["metadata"]["generate_audio"] is True
    assert out["estimated_cost_usd"] == pytest.approx(2.0)
