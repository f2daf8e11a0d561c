"""Chaos at the real API's timer order: kills, a Redis crash and outage, lost replies.

Every timer is scaled down by the same factor (1/30) so that their order is production's:
a generation (90 s real, 3 s here) is longer than the step grace and the call deadline,
the first poll comes after it, and the webhook safety poll long after. On top of that:
the provider loses the reply of one accepted submission in nine (the task exists and is
billed) and of one image request in three (the stills exist and are billed), both workers
are SIGKILLed in turn, Redis is SIGKILLed and restarted from its append-only file once
and is down for a few seconds once. Nothing restarts a process that the faults might
stop: beat and the workers ride out the Redis restarts by themselves (only the workers
the test kills are started again, as the fault itself).

What must hold, in polling and in webhook mode: no job is paid twice, the provider never
answers 429 (the fleet's limit equals its cap), no job fails, no partial file is left,
and every job either finishes or is left, honestly, in ``submit_unknown``: in webhook
mode only when its POST never reached the provider at all (a worker killed between its
claim and the request leaving), so that nothing it could adopt exists.

A few of the jobs are stills (a synchronous ``POST /v1/images/generations``, no task id,
no webhook). In both modes each made at most one billed request, and either is done with
stored stills whose sha256 is that of the PNGs the simulator served, or is in
``submit_unknown`` with nothing stored: its reply was lost (dropped, or its worker killed
while it waited) or its POST never left, and with no task to adopt the operator decides.
Two more stills are a storyboard's, each feeding a clip that runs in the thread that stored
its still: the clip ends like any other, or waits while its still is in doubt.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from simulator import VIDEO_SHA256, image_sha256
from simulator.testing import SimulatorProcess
from tests.fleet import Fleet, point_this_process_at, wait_until
from worker.infra.redis_server import RedisServer, free_port
from worker.job.inputs import WAITS_FOR
from worker.job.record import Billing, JobKind, JobState

pytestmark = pytest.mark.integration

SCALE = 1 / 30
JOBS = 20
IMAGE_EVERY = 5  # one job in five a still: 4 of the 20
IMAGE_DROP_EVERY = 3  # the provider drops the reply of one image request in three
PAIRS = 2  # storyboard pairs (a still, then a clip made from it) beside the JOBS
CAP = 4
S = JobState


def chaos_env(redis_url: str, sim_url: str, output: Path, *, webhooks: bool) -> dict[str, str]:
    """The fleet's settings, every production timer scaled by SCALE."""
    env = {
        "REDIS_URL": redis_url,
        "RELAYDANCE_API_KEY": "sk-test-chaos",
        "RELAYDANCE_BASE_URL": sim_url,
        "RELAYDANCE_ALLOW_LOCAL_URLS": "true",
        "RELAYDANCE_OUTPUT_DIR": str(output),
        "RELAYDANCE_MAX_CONCURRENCY": str(CAP),  # the limit equals the provider's cap
        "RELAYDANCE_TIME_SCALE": repr(SCALE),  # the catalogue's 90-120 s priors: 3-4 s
        "RELAYDANCE_SWEEP_INTERVAL_SECONDS": "0.7",  # 20 s
        "RELAYDANCE_SWEEP_GRACE_SECONDS": "0.7",  # 20 s
        "RELAYDANCE_STEP_GRACE_SECONDS": "3",  # 90 s
        "RELAYDANCE_HTTP_CALL_DEADLINE": "2",  # 60 s
        "RELAYDANCE_HTTP_CONNECT_TIMEOUT": "1",
        "RELAYDANCE_HTTP_READ_TIMEOUT": "2",
        "RELAYDANCE_SUBMIT_UNKNOWN_HOLD_SECONDS": "10",  # 300 s: well past any generation
        "RELAYDANCE_POLL_INTERVAL_MIN": "0.1",
        "RELAYDANCE_POLL_INTERVAL_MAX": "1",  # 30 s
        "RELAYDANCE_POLL_DEADLINE_SECONDS": "120",  # 3600 s
        "RELAYDANCE_TASK_EVENTS": "false",
    }
    if webhooks:
        env["RELAYDANCE_WEBHOOK_BASE_URL"] = f"http://127.0.0.1:{free_port()}/hooks"
        env["RELAYDANCE_WEBHOOK_SECRET"] = "chaos-webhook-secret-64ylFfLC6u5mVpsBpydQKc2p0ao4OfAM"
        env["RELAYDANCE_WEBHOOK_SAFETY_POLL_SECONDS"] = "20"  # 600 s
    return env


def unleash(fleets: list[Fleet], redis_server: RedisServer) -> int:
    """Kill the workers in turn, crash Redis once and take it down for 3 s once."""
    plan = ["kill", "kill", "crash", "kill", "kill", "outage", "kill", "kill", "kill", "kill"]
    kills = 0
    for event in plan:
        time.sleep(1.5)
        if event == "crash":
            redis_server.restart(crash=True)  # SIGKILL; back from the append-only file
        elif event == "outage":
            redis_server.restart(down_for=3.0)
        else:
            fleet = fleets[kills % len(fleets)]
            fleet.kill_worker()  # SIGKILL: no warm shutdown, no acknowledgements
            fleet.start_worker()
            kills += 1
    return kills


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    """A redis-server of its own, fsyncing its append-only file on every write.

    One for both modes (its port survives restarts), so this process's Celery producer
    keeps one broker address.
    """
    with RedisServer(appendonly=True, appendfsync="always") as redis_server:
        yield redis_server


@pytest.mark.timeout(400)
@pytest.mark.parametrize("mode", ["polling", "webhooks"])
def test_no_job_is_lost_or_paid_twice_under_kills_and_redis_restarts(
    mode: str, server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks import enqueue_render, get_job

    webhooks = mode == "webhooks"
    output = tmp_path / "renders"
    redis.Redis.from_url(server.url).flushall()
    with SimulatorProcess(**_chaos_knobs(webhooks=webhooks)) as sim:
        env = chaos_env(server.url, sim.url, output, webhooks=webhooks)
        point_this_process_at(env, monkeypatch)
        fleets = _two_fleets(env, tmp_path, web=webhooks)
        try:
            for fleet in fleets:
                fleet.start()
            ids = [enqueue_render(_render(n)) for n in range(JOBS)] + _storyboard()
            kills = unleash(fleets, server)
            # With webhooks, a job in doubt whose task exists waits for its webhook.
            found = sim.tasks_for if webhooks else None
            assert wait_until(lambda: _settled(ids, found), timeout=150, interval=0.5), _states(
                ids
            ) + str(tmp_path)
            _assert_nothing_restarted(fleets)
        finally:
            for fleet in fleets:
                fleet.stop()
        jobs = [get_job(i) for i in ids]
        stats = sim.stats()
        never_sent = {j.id for j in jobs if not sim.tasks_for(j.id)}

    assert kills >= 8
    assert stats["dropped_replies"] >= 1  # the fault happened
    assert (stats["paid_twice"], stats["image_paid_twice"]) == (0, 0), stats
    assert stats["rate_limited"] == 0, stats
    assert [j.id for j in jobs if j.state is S.FAILED] == [], [j.error_message for j in jobs]
    unknown = [j for j in jobs if j.state is S.SUBMIT_UNKNOWN]
    assert all(j.billing is Billing.UNKNOWN for j in unknown)  # kept, possibly billed
    if webhooks:
        # Every task the provider made was found, through its webhook when the reply was
        # lost; a clip is left unknown only when nothing of it ever reached the provider.
        clips = {j.id for j in unknown if j.kind is not JobKind.IMAGE}
        assert clips <= never_sent, _states(ids)
        assert any(j.adopted_from for j in jobs)
    waiting = [j for j in jobs if j.state is S.WAITING_FOR_INPUT]  # their still in doubt
    assert all(_still_in_doubt(j) for j in waiting), _states(ids)
    assert len([j for j in jobs if j.state is S.DONE]) == len(ids) - len(unknown) - len(waiting)
    assert list(output.glob(".*.part")) == []  # no partial file
    _assert_every_clip_whole(jobs)
    _assert_every_still_paid_once_and_whole(jobs, stats)


def _two_fleets(env: dict[str, str], tmp_path: Path, *, web: bool) -> list[Fleet]:
    """Two fleets of one worker each; the first runs beat (and the receiver, with ``web``)."""
    return [
        Fleet(env, _dir(tmp_path / "a"), concurrency=4, beat=True, web=web, name="a"),
        Fleet(env, _dir(tmp_path / "b"), concurrency=4, name="b"),
    ]


def _assert_nothing_restarted(fleets: list[Fleet]) -> None:
    """Nothing was restarted for them: beat, the receiver and the workers lived on."""
    assert [f.beat.poll() for f in fleets if f.beat is not None] == [None]
    assert all(f.worker is not None and f.worker.poll() is None for f in fleets)
    assert all(f.receiver.poll() is None for f in fleets if f.receiver is not None)


def _assert_every_clip_whole(jobs: list[Any]) -> None:
    for job in jobs:
        if job.state is S.DONE and job.kind is not JobKind.IMAGE:
            path = Path(job.output_path or "")
            assert hashlib.sha256(path.read_bytes()).hexdigest() == VIDEO_SHA256


def _assert_every_still_paid_once_and_whole(jobs: list[Any], stats: dict[str, Any]) -> None:
    """Each image job POSTed at most once; done with the stills served, or unknown with none
    stored; and every image request whose reply the provider dropped left its job unknown."""
    stills = [j for j in jobs if j.kind is JobKind.IMAGE]
    posts = stats["image_requests_by_idempotency_key"]
    assert len(stills) == JOBS // IMAGE_EVERY + PAIRS
    assert all(posts.get(j.id, 0) <= 1 for j in stills), posts  # never paid twice
    from worker.job.engine import get_engine

    ids = [j.id for j in stills]
    kept = dict(zip(ids, get_engine().store.image_urls(ids), strict=True))
    for job in stills:
        if job.state is S.DONE:
            urls = kept[job.id] or []  # the store keeps them apart from the record: signed
            assert posts.get(job.id) == 1 and len(job.outputs) == len(urls) == 1
            for out, url in zip(job.outputs, urls, strict=True):
                assert out["sha256"] == _served(url)
                assert hashlib.sha256(Path(out["path"]).read_bytes()).hexdigest() == _served(url)
        else:
            assert job.state is S.SUBMIT_UNKNOWN and job.outputs == [], job.state
    lost = [j for j in stills if j.state is S.SUBMIT_UNKNOWN and posts.get(j.id) == 1]
    assert len(lost) >= stats["image_requests"] // IMAGE_DROP_EVERY, (posts, stats)


def _served(url: str) -> str:
    """The sha256 of the 1024x1024 PNG the simulator serves at ``url`` (its id names it)."""
    return image_sha256(url.split("/images/")[1].split(".png")[0], 1024, 1024)


def _render(n: int) -> dict[str, Any]:
    """The ``n``-th job's request: a still for one job in IMAGE_EVERY, otherwise a clip."""
    if n % IMAGE_EVERY == IMAGE_EVERY - 2:
        return {"model": "grok-imagine-image", "prompt": f"chaos still {n}", "n": 1,
                "size": "1024x1024"}  # fmt: skip
    return {"model": "doubao-seedance-2-0-fast-260128", "prompt": f"chaos {n}", "seconds": 5}


def _chaos_knobs(*, webhooks: bool) -> dict[str, Any]:
    """The simulator: 90 s generations at SCALE, every ninth submit's reply dropped and
    every IMAGE_DROP_EVERY-th image request's."""
    return {
        "gen_time_mean": 90.0, "gen_time_jitter": 0.2, "time_scale": SCALE, "seed": 11,
        "concurrency_cap": CAP, "retry_after": 30.0, "drop_reply_every": 9,
        "image_drop_reply_every": IMAGE_DROP_EVERY,
        "webhooks": webhooks, "webhook_retry_base": 15.0, "webhook_max_attempts": 6,
    }  # fmt: skip


def _settled(ids: list[str], tasks_for: Callable[[str], list[Any]] | None = None) -> bool:
    """Every job final, or in doubt (its submit's reply lost) and, when ``tasks_for`` is
    given (webhooks), with no task at the provider that a webhook could still bring."""
    from tasks import get_job

    def done(job_id: str) -> bool:
        job = get_job(job_id)
        if job.state is S.SUBMIT_UNKNOWN:
            return tasks_for is None or not tasks_for(job_id)
        if job.state is S.WAITING_FOR_INPUT:  # a storyboard's clip: for as long as its still
            return _still_in_doubt(job)
        return job.is_final

    return all(done(i) for i in ids)


def _storyboard() -> list[str]:
    """PAIRS still -> clip pairs of one storyboard batch, enqueued beside the jobs: each
    clip waits for its still, then runs in the thread that stored it."""
    from worker.batch import Batches, batch_report, parse_records
    from worker.job.engine import get_engine

    lines: list[dict[str, Any]] = []
    for k in range(PAIRS):
        lines.append({"model": "grok-imagine-image", "prompt": f"chaos keyframe {k}", "n": 1,
                      "size": "1024x1024", "id": f"k{k}"})  # fmt: skip
        lines.append({**_render(0), "prompt": f"from keyframe {k}", "refs": [f"k{k}"]})
    batches = Batches(get_engine())
    _, rows = batch_report(batches, batches.submit(parse_records(lines)).batch_id)
    return [row.job_id or "" for row in rows]


def _still_in_doubt(clip: Any) -> bool:
    """Whether a storyboard clip waits for a still left ``submit_unknown`` (the operator's)."""
    from tasks import get_job

    stills = [s for s in clip.extra.get(WAITS_FOR, "").split(",") if s]
    return bool(stills) and any(get_job(s).state is S.SUBMIT_UNKNOWN for s in stills)


def _dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _states(ids: list[str]) -> str:
    from tasks import get_job

    return ", ".join(f"{i[-6:]}={get_job(i).state.value}" for i in ids)
