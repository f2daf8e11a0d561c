"""A real fleet delivering into a real S3-compatible server (moto) on loopback.

Celery workers, Redis and the simulator are real; the bucket is moto's S3 HTTP API, so
multipart uploads, IAM refusals and presigned URLs behave as S3 does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from click.testing import CliRunner

from simulator import VIDEO_SHA256
from simulator.testing import SimulatorProcess
from tasks import batch_report, clip_url, enqueue_batch, enqueue_render, get_job, wait, wait_batch
from tests.fleet import (
    ROOT,
    Fleet,
    fleet_env,
    flower_lists_downloads,
    flower_sees_a_worker,
    start_flower,
    use_env,
    wait_until,
)
from tests.s3_server import Bucket
from worker.batch.report import render_report
from worker.cli.main import main
from worker.infra.redis_server import RedisServer, free_port
from worker.job.record import JobState

pytestmark = pytest.mark.integration
MODEL = "doubao-seedance-2-0-fast-260128"
MIB = 1 << 20


def s3_env(redis_server: RedisServer, sim: SimulatorProcess, bucket: Bucket, workdir: Path,
           **extra: str) -> dict[str, str]:  # fmt: skip
    """A fleet whose clips go to ``bucket``; ``workdir`` is only its local working dir."""
    redis.Redis.from_url(redis_server.url).flushall()
    env = fleet_env(redis_url=redis_server.url, sim_url=sim.url, output_dir=workdir)
    env.update(bucket.env())
    env.update(extra)
    return env


def _fleet(env: dict[str, str], tmp_path: Path, name: str = "logs", **kw: object) -> Fleet:
    logs = tmp_path / name
    logs.mkdir()
    return Fleet(env, logs, **kw)  # type: ignore[arg-type]


@pytest.fixture
def fleet(redis_server: RedisServer, sim: SimulatorProcess, bucket: Bucket,
          tmp_path: Path) -> Iterator[Fleet]:  # fmt: skip
    env = s3_env(redis_server, sim, bucket, tmp_path / "work")
    fleet = _fleet(env, tmp_path, beat=True)
    with fleet.running():
        yield fleet


def test_a_render_ends_with_its_clip_and_manifest_in_the_bucket_with_the_right_sha256(
    fleet: Fleet, bucket: Bucket, sim: SimulatorProcess, tmp_path: Path
) -> None:
    job_id = enqueue_render({"model": MODEL, "prompt": "a lighthouse at dusk"})
    job = wait(job_id, timeout=60)

    assert job.state is JobState.DONE, (job.error_message, fleet.logs())
    key = f"renders/{job_id}.mp4"
    assert bucket.keys() == sorted([key, f"renders/{job_id}.json"])
    assert hashlib.sha256(bucket.read(key)).hexdigest() == VIDEO_SHA256 == job.sha256
    assert job.output_uri == f"s3://clips/{key}" and job.output_path is None
    assert job.size == len(bucket.read(key))
    assert job.etag == bucket.head(key)["ETag"].strip('"')
    manifest = bucket.manifest(job_id)
    assert manifest["uri"] == job.output_uri and manifest["sha256"] == VIDEO_SHA256
    assert manifest["etag"] == job.etag
    assert not list((tmp_path / "work").glob("*.mp4"))  # nothing on the worker's disk
    assert sim.stats()["submissions"] == 1
    # The producer API, `relaydance status` and the on_done summary give the URI.
    assert job.summary()["output_uri"] == job.output_uri
    status = CliRunner().invoke(main, ["status", job_id, "--json"])
    assert json.loads(status.output)["output_uri"] == job.output_uri
    # A presigned HTTPS-style URL plays the clip without credentials.
    url = clip_url(job_id, expires_in=300)
    assert url is not None and "X-Amz-Signature=" in url
    assert hashlib.sha256(httpx.get(url, timeout=10).content).hexdigest() == VIDEO_SHA256
    printed = CliRunner().invoke(main, ["storage", "url", job_id])
    assert printed.exit_code == 0 and printed.output.startswith(bucket.server.url)


def test_a_worker_killed_mid_upload_leaves_no_object_and_the_retry_commits_exactly_one(
    fleet: Fleet, bucket: Bucket, sim: SimulatorProcess
) -> None:
    size = 14 * MIB
    # About 5 s per download: the kill lands after a part went up, before the commit.
    sim.configure(video_bytes=size, download_rate=3 * MIB)
    job_id = enqueue_render({"model": MODEL, "prompt": "a big clip"})
    key = f"renders/{job_id}.mp4"

    def a_part_went_up() -> bool:
        s3 = bucket.s3()
        for upload in s3.list_multipart_uploads(Bucket="clips").get("Uploads", []):
            parts = s3.list_parts(Bucket="clips", Key=upload["Key"], UploadId=upload["UploadId"])
            if parts.get("Parts"):
                return True
        return False

    assert wait_until(a_part_went_up, timeout=60, interval=0.1), fleet.logs()
    fleet.kill_worker()
    assert get_job(job_id).state is JobState.DOWNLOADING
    assert bucket.keys() == []  # nothing visible under the final name
    assert bucket.uploads() == [key]  # the killed worker's upload, incomplete

    sim.configure(download_rate=0.0)
    fleet.start_worker()
    job = wait(job_id, timeout=90)

    assert job.state is JobState.DONE, (job.error_message, fleet.logs())
    assert bucket.keys() == sorted([key, f"renders/{job_id}.json"])
    body = bucket.read(key)
    assert len(body) == size == job.size
    assert hashlib.sha256(body).hexdigest() == job.sha256
    assert bucket.uploads() == []  # the committing attempt aborted the killed one
    stats = sim.stats()
    assert stats["submissions"] == 1
    assert stats["downloads"] == 2


def test_a_bucket_that_refuses_writes_keeps_the_paid_job_and_delivers_once_it_accepts(
    redis_server: RedisServer, sim: SimulatorProcess, bucket: Bucket, tmp_path: Path
) -> None:
    writer = bucket.make_user("writer", ["s3:GetObject", "s3:ListBucket"])
    bucket.creds = bucket.make_user("admin", ["*"])
    env = s3_env(redis_server, sim, bucket, tmp_path / "work",
                 RELAYDANCE_STORAGE_RETRY_INTERVAL="0.5")  # fmt: skip
    env.update(bucket.env(**writer))
    fleet = _fleet(env, tmp_path, beat=True)
    with fleet.running():
        with bucket.server.enforcing_iam():  # the bucket now refuses the writer's writes
            job_id = enqueue_render({"model": MODEL, "prompt": "a refused clip"})

            def refused() -> bool:
                return get_job(job_id).error_code == "storage_refused"

            assert wait_until(refused, timeout=60, interval=0.1), fleet.logs()
            job = get_job(job_id)
            assert job.state is JobState.DOWNLOADING, job.state  # kept, not failed
            assert "AccessDenied" in (job.error_message or "")
            assert "s3:PutObject" in (job.error_message or "")
            shown = CliRunner().invoke(main, ["status", job_id])
            assert "storage_refused" in shown.output
            assert bucket.keys() == [] and bucket.uploads() == []

            bucket.allow("writer", ["s3:*"])  # the operator grants the write
            job = wait(job_id, timeout=60)
            assert job.state is JobState.DONE, (job.error_message, fleet.logs())
            assert bucket.keys() == sorted([f"renders/{job_id}.mp4", f"renders/{job_id}.json"])
            body = bucket.read(f"renders/{job_id}.mp4")
    assert hashlib.sha256(body).hexdigest() == VIDEO_SHA256
    assert job.error_code is None
    stats = sim.stats()
    assert stats["submissions"] == 1  # no spend lost, none doubled
    # The refusal came at CreateMultipartUpload, before the provider's url was opened;
    # after the fix the clip was fetched from the provider (a fresh url from the task).
    assert stats["downloads"] == 1
    assert fleet.log_lines(f"job {job_id}") and any(
        "refused the clip; delivery retried" in line for line in fleet.log_lines(job_id)
    )


def test_two_workers_with_different_working_directories_deliver_every_clip_to_one_bucket(
    redis_server: RedisServer, sim: SimulatorProcess, bucket: Bucket, tmp_path: Path
) -> None:
    sim.configure(video_bytes=2 * MIB, download_rate=4 * MIB)  # each download takes a while
    hosts = []
    for name in ("host-a", "host-b"):
        env = s3_env(redis_server, sim, bucket, tmp_path / name / "work")
        hosts.append(_fleet(env, tmp_path, f"{name}-logs", concurrency=1, beat=name == "host-a"))
    with use_env(hosts[0].env):
        try:
            for host in hosts:
                host.start()
            sub = enqueue_batch([{"model": MODEL, "prompt": f"clip {i}"} for i in range(6)])
            wait_batch(sub.batch_id, timeout=120, interval=0.2)
            _, rows = batch_report(sub.batch_id)
            jobs = [get_job(row.job_id or "") for row in rows]
            ids = [j.id for j in jobs]
            csv_report = render_report(*batch_report(sub.batch_id), fmt="csv")
        finally:
            for host in hosts:
                host.stop()
    assert all(j.state is JobState.DONE for j in jobs), [j.error_message for j in jobs]
    # The batch report gives each line's object URI.
    assert [r.output_uri for r in rows] == [f"s3://clips/renders/{j}.mp4" for j in ids]
    assert csv_report.splitlines()[0].split(",")[3:5] == ["output_path", "output_uri"]
    keys = bucket.keys()
    for job in jobs:
        assert f"renders/{job.id}.mp4" in keys and f"renders/{job.id}.json" in keys
        assert job.output_uri == f"s3://clips/renders/{job.id}.mp4"
    assert len(keys) == 12
    delivered = {host.log_dir.name: [j.id for j in jobs if host.log_lines(f"uploaded {j.id} to")]
                 for host in hosts}  # fmt: skip
    assert all(delivered.values()), delivered  # both hosts delivered some of the clips
    assert sorted(j for found in delivered.values() for j in found) == sorted(ids)
    for name in ("host-a", "host-b"):
        assert not list((tmp_path / name / "work").glob("*.mp4"))


def test_a_worker_that_cannot_write_to_its_bucket_exits_before_taking_any_job(
    redis_server: RedisServer, sim: SimulatorProcess, bucket: Bucket, tmp_path: Path
) -> None:
    env = s3_env(redis_server, sim, bucket, tmp_path / "work",
                 RELAYDANCE_OUTPUT="s3://no-such-bucket/renders")  # fmt: skip
    with use_env(env):
        job_id = enqueue_render({"model": MODEL, "prompt": "never paid for"})
        run = {k: v for k, v in os.environ.items() if not k.startswith("RELAYDANCE_")}
        run.update(env, PYTHONPATH=str(ROOT))
        worker = subprocess.run(
            [sys.executable, "-m", "celery", "-A", "worker", "worker", "--pool", "threads",
             "--concurrency", "1", "--without-gossip", "--without-mingle"],
            env=run, cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert get_job(job_id).state is JobState.QUEUED
        check = CliRunner().invoke(main, ["storage", "check"])
    assert worker.returncode == 3
    assert "this worker will not start: the output is not writable" in worker.stderr
    assert "create bucket 'no-such-bucket' or fix RELAYDANCE_OUTPUT" in worker.stderr
    assert sim.stats()["submissions"] == 0
    assert check.exit_code == 1 and "NoSuchBucket" in check.output


def test_cloud_credentials_never_appear_in_logs_flower_or_records(
    redis_server: RedisServer, sim: SimulatorProcess, bucket: Bucket, tmp_path: Path
) -> None:
    canary = {"access_key": "AKIACANARY" + uuid.uuid4().hex[:10].upper(),
              "secret_key": "canary-secret-" + uuid.uuid4().hex}  # fmt: skip
    env = s3_env(redis_server, sim, bucket, tmp_path / "work")
    env.update(bucket.env(**canary), RELAYDANCE_LOG_JSON="false")
    fleet = _fleet(env, tmp_path, beat=True)
    port = free_port()
    logs = fleet.log_dir
    with use_env(env):
        flower = start_flower(port, env, (logs / "flower.log").open("wb"))
        fleet.start()
        try:
            auth = ("ops", "test-pass")
            ready = wait_until(lambda: flower_sees_a_worker(port, auth), timeout=60, interval=0.5)
            assert ready, fleet.logs()
            ids = [enqueue_render({"model": MODEL, "prompt": f"canary {i}"}) for i in range(2)]
            jobs = [wait(i, timeout=60) for i in ids]
            signed = [clip_url(j) for j in jobs]  # presigned in the producer, never stored
            api = f"http://127.0.0.1:{port}/api/tasks"
            listed = wait_until(lambda: flower_lists_downloads(api, auth, 2), timeout=90,
                                interval=0.5)  # fmt: skip
            assert listed, fleet.logs()
            flower_text = httpx.get(api, auth=auth, timeout=5).text
            flower_text += httpx.get(f"http://127.0.0.1:{port}/tasks", auth=auth, timeout=5).text
        finally:
            fleet.stop()
            flower.terminate()
            flower.wait(timeout=10)
    assert all(j.state is JobState.DONE for j in jobs)
    assert all(url and canary["access_key"] in url for url in signed)  # the canary was used
    secrets = [canary["secret_key"], canary["access_key"]]
    secrets += [httpx.URL(url).params["X-Amz-Signature"] for url in signed if url]
    everything = [flower_text] + [p.read_text(errors="replace") for p in logs.glob("*.log")]
    everything += _everything_in_redis(redis.Redis.from_url(redis_server.url))
    for secret in secrets:
        assert not [text[:200] for text in everything if secret in text], secret
    manifests = [json.dumps(bucket.manifest(j.id)) for j in jobs]
    assert not [m for m in manifests for s in secrets if s in m]


def _everything_in_redis(client: redis.Redis) -> list[str]:
    """Every hash field, string and list entry in Redis, as text."""
    everything: list[str] = []
    for key in client.scan_iter(count=500):
        kind = client.type(key)
        if kind == b"hash":
            everything += [f"{k!r}={v!r}" for k, v in client.hgetall(key).items()]
        elif kind == b"string":
            everything.append(repr(client.get(key)))
        elif kind == b"list":  # Celery messages: JSON with a base64 body
            everything += [_with_body(v) for v in client.lrange(key, 0, -1)]
    return everything


def _with_body(message: bytes) -> str:
    """A Celery message as text, its base64 body decoded too."""
    try:
        body = json.loads(message).get("body", "")
        return repr(message) + repr(base64.b64decode(body))
    except (ValueError, AttributeError):
        return repr(message)
