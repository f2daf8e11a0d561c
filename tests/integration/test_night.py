"""An unattended night: the faults of what the fleet depends on pause it; nothing fails.

A batch of jobs on two keys, one RelayDance and one Kinovi (a ``key`` per line), meets in
turn: the account's credit running out (RelayDance's 403 "insufficient balance", Kinovi's
402) and a top-up, a revoked key and its restoration, a provider outage (every route 503
in the provider's own JSON), and Redis SIGKILLed and restarted from its append-only file. Every timer is scaled down by the same factor (1/30), so a generation (90 s
real, 3 s here) outlasts the step grace, and the probe interval (300 s real) is 10 s here.
Workers and beat run as real processes, and nothing restarts them: not after the Redis
restart either.

What must hold at the end: every job done, none failed, none left ``submit_unknown``,
nothing billed twice; each pause drew a handful of refusals (the submissions already in
flight, then one per probe), not one per waiting job; and while each fault lasted, the
reason was shown (a waiting job's status, the key's limits, ``batch status``, /metrics).
Every process outlived the Redis restart. Each pause ended
through a probe, and a chat channel was paged through ``RELAYDANCE_ON_ALERT``.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from simulator.testing import SimulatorProcess
from tests.fleet import Fleet, point_this_process_at, wait_for, wait_until
from worker.infra.redis_server import RedisServer
from worker.job.record import JobState

pytestmark = pytest.mark.integration

SCALE = 1 / 30
JOBS = 36  # half on each key
CAP = 2  # per key: the simulator's cap too
PROBE = 300 * SCALE  # 10 s: well above a generation (3 s)
BREAKER = 3
STUDIO_KEY, KINOVI_KEY = "sk-night-studio-0001", "kin-night-0001"
S = JobState


def _fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:8]


class ChatChannel:
    """A chat service's incoming webhook on loopback: it keeps every posted text."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                outer.texts.append(json.loads(self.rfile.read(length))["text"])
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T0/B0/x"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def night_env(redis_url: str, sim: SimulatorProcess, output: Path, chat: str) -> dict[str, str]:
    """The fleet's settings, every production timer scaled by SCALE."""
    keys = {
        "studio": STUDIO_KEY,
        "kin": {"key": KINOVI_KEY, "provider": "kinovi", "base_url": sim.kinovi_url},
    }
    return {
        "REDIS_URL": redis_url,
        "RELAYDANCE_API_KEYS": json.dumps(keys),
        "RELAYDANCE_BASE_URL": sim.url,
        "RELAYDANCE_ALLOW_LOCAL_URLS": "true",
        "RELAYDANCE_OUTPUT_DIR": str(output),
        "RELAYDANCE_MAX_CONCURRENCY": str(CAP),
        "RELAYDANCE_TIME_SCALE": repr(SCALE),
        "RELAYDANCE_PAUSE_PROBE_SECONDS": repr(PROBE),  # 300 s
        "RELAYDANCE_BREAKER_FAILURES": str(BREAKER),
        "RELAYDANCE_SWEEP_INTERVAL_SECONDS": "0.7",  # 20 s
        "RELAYDANCE_SWEEP_GRACE_SECONDS": "0.7",  # 20 s
        "RELAYDANCE_STEP_GRACE_SECONDS": "3",  # 90 s
        "RELAYDANCE_HTTP_CALL_DEADLINE": "2",  # 60 s
        "RELAYDANCE_HTTP_CONNECT_TIMEOUT": "1",
        "RELAYDANCE_HTTP_READ_TIMEOUT": "2",
        "RELAYDANCE_POLL_INTERVAL_MIN": "0.1",
        "RELAYDANCE_POLL_INTERVAL_MAX": "1",  # 30 s
        "RELAYDANCE_POLL_DEADLINE_SECONDS": "120",  # 3600 s
        "RELAYDANCE_TASK_EVENTS": "false",
        "RELAYDANCE_ON_ALERT": "examples.alerts.chat.page_someone",
        "STUDIO_CHAT_WEBHOOK": chat,
    }


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer(appendonly=True, appendfsync="always") as redis_server:
        yield redis_server


def _holds(alias: str) -> list[Any]:
    from worker.job.engine import get_engine

    return get_engine().limits.paused(alias)


def _down() -> list[str]:
    from worker.job.engine import get_engine

    limits = get_engine().limits
    routes = {limits.route("studio"), limits.route("kin")}
    return sorted(r for r in routes if limits.breakers.state(r) is not None)


def _shown(alias: str, ids: list[str], batch_id: str) -> list[str]:
    """What every view says of the alias's pause while it lasts (asserts each says it)."""
    from worker.job.engine import get_engine
    from worker.job.explain import explain, facts_for
    from worker.web.metrics import render_metrics

    engine = get_engine()
    snap = engine.limit_snapshots()[alias]
    assert snap["paused"] and snap["paused_since"], snap
    assert f'relaydance_key_paused{{key="{alias}"}} 1.0' in render_metrics(engine)
    waiting = [j for j in engine.store.get_many(ids) if j and j.alias == alias and not j.is_final
               and j.state in (S.QUEUED, S.WAITING_FOR_SLOT)]  # fmt: skip
    texts = [explain(job, facts_for(engine, job)).text for job in waiting]
    assert all(text.startswith("paused: ") for text in texts), texts
    return [snap["paused"], *texts, *_batch_says(batch_id, alias)]


def _batch_says(batch_id: str, alias: str) -> list[str]:
    from tasks.batches import get_batch

    paused = get_batch(batch_id).paused  # what `relaydance batch status` prints
    assert alias in paused, paused
    return [paused[alias]]


@pytest.mark.timeout(420)
def test_a_night_of_outside_faults_pauses_the_fleet_and_fails_nothing(
    server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks import get_job

    redis.Redis.from_url(server.url).flushall()
    chat = ChatChannel()
    with SimulatorProcess(**_night_knobs()) as sim:
        env = night_env(server.url, sim, tmp_path / "renders", chat.url)
        point_this_process_at(env, monkeypatch)
        monkeypatch.setenv("STUDIO_CHAT_WEBHOOK", chat.url)
        fleets = _two_fleets(env, tmp_path)
        shown: list[str] = []
        try:
            for fleet in fleets:
                fleet.start()
            night, ids = _enqueue_the_night()

            refused_on_credit = _credit_runs_out(sim, ids, night.batch_id, shown)
            _studio_key_revoked(sim, ids, night.batch_id, shown)
            during = _provider_outage(sim, ids, night.batch_id, shown)

            # 4. Redis is SIGKILLed and comes back from its append-only file: nothing restarts
            # the workers or beat, and the night goes on.
            server.restart(crash=True, down_for=2.0)

            assert wait_until(lambda: all(get_job(i).is_final for i in ids), timeout=240,
                              interval=0.5), _states(ids) + str(tmp_path)  # fmt: skip
            procs = [p for f in fleets for p in (f.worker, f.beat) if p is not None]
            alive = len(procs) == 3 and all(p.poll() is None for p in procs)
        finally:
            for fleet in fleets:
                fleet.stop()
            chat.close()
        jobs = [get_job(i) for i in ids]
        stats = sim.stats()

    assert alive, "a process died of the Redis restart"
    assert fleets[1].beat is None  # only the first fleet runs beat
    assert [(j.id, j.error_code) for j in jobs if j.state is not S.DONE] == []
    assert stats["paid_twice"] == 0 and stats["billed_tasks"] == JOBS, stats
    # A handful of refusals per pause: the submissions in flight, then one per probe.
    assert refused_on_credit <= 2 * (CAP + 3), stats
    assert stats["unauthorized"] <= 2 * CAP + 4, stats  # submissions and polls in flight
    assert during <= 2 * (BREAKER + 8) + 4 * CAP, during  # then a few probes per route
    assert any("insufficient" in text.lower() for text in shown)
    assert any("401" in text for text in shown) and any("provider down" in t for t in shown)
    pages = "\n".join(chat.texts)
    for kind in ("key_paused", "provider_down", "resolved: key_paused"):
        assert kind in pages, pages


def _night_knobs() -> dict[str, Any]:
    """The simulator of the night: 90 s generations at SCALE, 8 clips of credit."""
    return {
        "gen_time_mean": 90.0, "gen_time_jitter": 0.2, "time_scale": SCALE, "seed": 5,
        "concurrency_cap": CAP, "retry_after": 30.0, "webhooks": False, "credit_clips": 8,
    }  # fmt: skip


def _two_fleets(env: dict[str, str], tmp_path: Path) -> list[Fleet]:
    """Two fleets of one worker each; only the first runs beat."""
    return [
        Fleet(env, _dir(tmp_path / "a"), concurrency=4, beat=True, name="a",
              includes=["examples.alerts.chat"]),
        Fleet(env, _dir(tmp_path / "b"), concurrency=4, name="b",
              includes=["examples.alerts.chat"]),
    ]  # fmt: skip


def _enqueue_the_night() -> tuple[Any, list[str]]:
    """The night's batch, studio's and Kinovi's lines alternating, and its jobs' ids."""
    from tasks.batches import enqueue_batch

    lines = [{"model": "doubao-seedance-2-0-fast-260128" if n % 2 else "seedance2-fast",
              "prompt": f"night shot {n}", "seconds": 5,
              "key": "studio" if n % 2 else "kin"} for n in range(JOBS)]  # fmt: skip
    night = enqueue_batch(lines, key="studio", name="night")
    ids = list(wait_for(lambda: _jobs_of(night.batch_id), timeout=30,
                        what="every line's job").values())  # fmt: skip
    return night, ids


def _credit_runs_out(sim: SimulatorProcess, ids: list[str], batch_id: str, shown: list[str]) -> int:
    """1. The credit runs out after 8 clips: both keys pause; a top-up resumes them. Returns
    the submissions refused for credit meanwhile."""
    wait_for(lambda: all(_holds(a) for a in ("studio", "kin")), timeout=60,
             what="both keys paused by the empty balance")  # fmt: skip
    assert {h.kind for a in ("studio", "kin") for h in _holds(a)} == {"insufficient_credits"}
    shown += _shown("studio", ids, batch_id) + _shown("kin", ids, batch_id)
    time.sleep(PROBE * 1.2)  # a probe is refused meanwhile
    refused_on_credit = int(sim.stats()["refused_credits"])
    sim.configure(credit_clips=1000)
    wait_for(lambda: not _holds("studio") and not _holds("kin"), timeout=4 * PROBE,
             what="the probes after the top-up to lift both pauses")  # fmt: skip
    return refused_on_credit


def _studio_key_revoked(
    sim: SimulatorProcess, ids: list[str], batch_id: str, shown: list[str]
) -> None:
    """2. Studio's key is revoked, then restored: only studio's line pauses."""
    sim.configure(revoked_keys=[_fingerprint(STUDIO_KEY)])
    wait_for(lambda: [h.kind for h in _holds("studio")] == ["unauthorized"],
             timeout=60, what="studio paused by its revoked key")  # fmt: skip
    shown += _shown("studio", ids, batch_id)
    assert _holds("kin") == []
    sim.configure(revoked_keys=[])
    wait_for(lambda: not _holds("studio"), timeout=4 * PROBE,
             what="a probe with the restored key to lift the pause")  # fmt: skip


def _provider_outage(sim: SimulatorProcess, ids: list[str], batch_id: str, shown: list[str]) -> int:
    """3. A provider outage: both routes' breakers open, then close by probes. Returns the
    requests the provider saw during the outage."""
    before = sim.stats()["outage_requests"]
    sim.configure(outage=True)
    wait_for(lambda: len(_down()) == 2, timeout=60, what="both breakers open")
    shown += _shown("studio", ids, batch_id)
    time.sleep(PROBE)
    sim.configure(outage=False)
    during = int(sim.stats()["outage_requests"] - before)
    wait_for(lambda: not _down(), timeout=4 * PROBE, what="the breakers to close")
    return during


def _jobs_of(batch_id: str) -> dict[int, str] | None:
    from worker.api.batches import batches as _batches

    jobs = _batches().job_ids(batch_id)
    return jobs if len(jobs) == JOBS else None


def _dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _states(ids: list[str]) -> str:
    from tasks import get_job

    return ", ".join(f"{i[-6:]}={get_job(i).state.value}" for i in ids)
