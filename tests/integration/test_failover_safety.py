"""Failover safety: a write a payment depends on is confirmed by a replica before it counts.

A real primary and a real replica (``--replicaof``), no sentinels: the replica's process is
stopped (SIGSTOP) to stand for a replica that no longer keeps up, which is what the
primary of a partition that a failover ends sees. The steps run in this process against
the simulator over real HTTP; ``WAIT`` is Redis's own.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from config.settings import load_settings
from simulator.testing import SimulatorProcess
from tests.batch_requests import jsonl, req
from tests.fleet import point_this_process_at
from tests.pipeline_helpers import RecordingEngine, drive, make_engine, make_job, run_step
from worker.batch import Batches, parse_records
from worker.cli.main import main
from worker.errors import NotDurable
from worker.infra.redis_server import RedisServer
from worker.job import pipeline
from worker.job.failover import CONFIRM_TASK
from worker.job.record import Billing, JobState
from worker.job.submit import resubmit
from worker.job.webhook import adopt_task

S = JobState
KEY = "sk-test-failover-safety"


class Pair:
    """A primary and its replica, both running."""

    def __init__(self) -> None:
        self.primary = RedisServer(extra=["--repl-diskless-sync-delay", "0"]).start()
        self.replica = RedisServer(
            extra=["--replicaof", "127.0.0.1", str(self.primary.port)]
        ).start()
        self.client = redis.Redis.from_url(self.primary.url, decode_responses=True)
        deadline = time.monotonic() + 20
        while self.client.info("replication").get("slave0", {}).get("state") != "online":
            assert time.monotonic() < deadline, "the replica never synced"
            time.sleep(0.05)

    def in_sync(self) -> None:
        """Wait until the replica has everything the primary has (after a flush)."""
        self.client.set("sync", "1")
        assert int(self.client.wait(1, 4000)) == 1

    @contextmanager
    def replica_stopped(self) -> Iterator[None]:
        """The replica reads nothing while inside (SIGSTOP), then catches up again."""
        assert self.replica.pid is not None
        os.kill(self.replica.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.replica.pid, signal.SIGCONT)

    def stop(self) -> None:
        self.client.close()
        self.replica.stop()
        self.primary.stop()


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    found = Pair()
    yield found
    found.stop()


@pytest.fixture
def engine(pair: Pair, sim: SimulatorProcess, tmp_path: Path) -> Iterator[RecordingEngine]:
    pair.client.flushall()
    pair.in_sync()
    eng = make_engine(_settings(pair.primary.url, sim, tmp_path))
    yield eng
    eng.close()


def _settings(url: str, sim: SimulatorProcess, tmp_path: Path, **extra: object) -> object:
    return load_settings(
        redis_url=url, api_key=KEY, base_url=sim.url, allow_local_urls=True,
        output_dir=tmp_path / "renders", poll_first_delay=0.2, poll_interval_min=0.1,
        poll_interval_max=0.3, step_grace_seconds=5, redis_wait_ms=200, **extra,
    )  # fmt: skip


def _waits(client: redis.Redis) -> int:
    """WAIT commands the server has run."""
    return int(client.info("commandstats").get("cmdstat_wait", {}).get("calls", 0))


def test_a_claim_no_replica_confirms_is_not_sent_and_the_job_waits_first_in_line_unbilled(
    engine: RecordingEngine, pair: Pair, sim: SimulatorProcess
) -> None:
    job_id = make_job(engine)
    with pair.replica_stopped():
        outcome = run_step(engine, "submit", job_id, seq=0)
        job = engine.store.get(job_id)
        assert outcome.action == "stop" and job is not None
        assert sim.stats()["submissions"] == 0  # nothing left for the provider
        assert (job.state, job.billing, job.seq) == (S.WAITING_FOR_SLOT, Billing.NONE, 1)
        assert engine.limits.position("default", job_id) == 1  # first in line, no slot held
        assert not engine.limits.holds("default", job_id)
        assert ("relaydance.grant", ("default",), 5.0) in engine.sent
    done = drive(engine, job_id)  # the replica keeps up again: the job goes through
    assert done.state is S.DONE and sim.stats()["submissions"] == 1
    assert sim.stats()["paid_twice"] == 0


def test_claims_and_task_ids_wait_for_the_replica_and_a_lone_redis_sends_no_wait(
    engine: RecordingEngine, pair: Pair, sim: SimulatorProcess, redis_url: str, tmp_path: Path
) -> None:
    before = _waits(pair.client)
    assert drive(engine, make_job(engine)).state is S.DONE
    assert _waits(pair.client) - before == 2  # the claim and the recorded task id
    assert engine.store.durability.replicas == 1  # one replica connected at start
    lone = make_engine(_settings(redis_url, sim, tmp_path))  # type: ignore[arg-type]
    try:
        before = _waits(lone.redis)  # the session's server: other tests may have sent some
        assert drive(lone, make_job(lone)).state is S.DONE
        assert lone.store.durability.replicas == 0
        assert _waits(lone.redis) - before == 0  # failover safety off: not one WAIT sent
    finally:
        lone.close()


def test_a_task_id_no_replica_confirms_goes_on_and_is_recorded_again_if_a_failover_lost_it(
    engine: RecordingEngine, pair: Pair, sim: SimulatorProcess
) -> None:
    sim.configure(latency=1.0)  # the reply comes a second after the task is made
    job_id = make_job(engine)
    outcome: list[pipeline.Outcome] = []
    thread = threading.Thread(
        target=lambda: outcome.append(run_step(engine, "submit", job_id, seq=0))
    )
    thread.start()
    deadline = time.monotonic() + 20
    while sim.stats()["submissions"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)  # the claim was confirmed: the POST is at the provider
    with pair.replica_stopped():
        thread.join(timeout=20)
        job = engine.store.get(job_id)
        assert job is not None and job.state is S.SUBMITTED and outcome[0].action == "next"
        task_id = job.remote_task_id
        assert task_id is not None
        # The job goes on; the id is to be confirmed later, with its claim.
        assert [(n, a) for n, a, _ in engine.sent if n == CONFIRM_TASK] == [
            (CONFIRM_TASK, (job_id, task_id, job.submit_claim, 0))
        ]
        confirm = {"task_id": task_id, "claim": job.submit_claim}
        assert pipeline.confirm_task(engine, job_id, **confirm).reason == "not confirmed yet"
        # A failover that lost the recorded id takes the record back to its claim.
        engine.store._change(job_id, states=None, to=S.SUBMITTING,
                            set={"remote_task_id": "", "billing": "pending"})  # fmt: skip
    sim.configure(latency=0.0)
    again = pipeline.confirm_task(engine, job_id, **confirm)
    job = engine.store.get(job_id)
    assert again.action == "next"  # recorded again: its chain goes on from submitted
    assert job is not None and (job.state, job.remote_task_id) == (S.SUBMITTED, task_id)
    assert pipeline.confirm_task(engine, job_id, **confirm).reason == "confirmed"
    assert drive(engine, job_id).state is S.DONE
    assert sim.stats()["submissions"] == 1  # never submitted again


def test_an_adoption_no_replica_confirms_stands_and_is_confirmed_later(
    engine: RecordingEngine, pair: Pair
) -> None:
    job_id = make_job(engine)
    engine.store._change(job_id, states=None, to=S.SUBMIT_UNKNOWN,
                        set={"billing": "unknown", "submit_claim": 0})  # fmt: skip
    job = engine.store.get(job_id)
    assert job is not None
    with pair.replica_stopped():
        adopted = adopt_task(engine, job, task_id="task_orphan", status="running", source="webhook")
    assert adopted.action == "next"
    found = engine.store.get(job_id)
    assert found is not None and (found.state, found.remote_task_id) == (S.SUBMITTED, "task_orphan")
    assert (CONFIRM_TASK, (job_id, "task_orphan", 0, 0)) in [(n, a) for n, a, _ in engine.sent]


def test_an_operators_resubmit_no_replica_confirms_is_not_started_until_it_is_due(
    engine: RecordingEngine, pair: Pair
) -> None:
    job_id = make_job(engine)
    engine.store._change(job_id, states=None, to=S.SUBMIT_UNKNOWN,
                        set={"billing": "unknown", "submit_claim": 0})  # fmt: skip
    with pair.replica_stopped():
        job = resubmit(engine, job_id)
    assert job.state is S.WAITING_FOR_SLOT and job.orphans == 1
    assert not [s for s in engine.sent if s[0] == "relaydance.submit"]  # the sweeper starts it
    confirmed = make_job(engine)
    engine.store._change(confirmed, states=None, to=S.SUBMIT_UNKNOWN,
                        set={"billing": "unknown", "submit_claim": 0})  # fmt: skip
    resubmit(engine, confirmed)
    assert ("relaydance.submit", (confirmed, 1, 0), None) in engine.sent


def test_a_budget_reservation_no_replica_confirms_makes_no_job_and_a_resume_takes_its_lines(
    engine: RecordingEngine, pair: Pair
) -> None:
    batches = Batches(engine)
    parsed = parse_records([req(f"clip {i}") for i in range(3)])
    with pair.replica_stopped(), pytest.raises(NotDurable) as refused:
        batches.submit(parsed, budget=10.0, name="shoot")
    assert "relaydance batch resume" in str(refused.value)
    assert engine.store.in_state(S.QUEUED) == []  # no job made for the reservation
    batch_id = batches.store.resolve("shoot")
    assert batches.status(batch_id).committed_usd == pytest.approx(0.0)  # given back
    resumed = batches.resume(batch_id)
    assert resumed.enqueued == 3 and len(engine.store.in_state(S.QUEUED)) == 3
    assert batches.status(batch_id).committed_usd == pytest.approx(3 * 0.70)


def test_the_cli_says_a_reservation_no_replica_confirmed_was_not_enqueued_and_what_next(
    pair: Pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pair.client.flushall()
    pair.in_sync()
    point_this_process_at({"REDIS_URL": pair.primary.url, "RELAYDANCE_API_KEY": KEY,
                           "RELAYDANCE_REDIS_WAIT_MS": "100",
                           "RELAYDANCE_OUTPUT_DIR": str(tmp_path)}, monkeypatch)  # fmt: skip
    lines = tmp_path / "shoot.jsonl"
    lines.write_text(jsonl([req("one"), req("two")]))
    with pair.replica_stopped():
        result = CliRunner().invoke(main, ["batch", "submit", str(lines), "--name", "shoot"])
    assert result.exit_code == 3, result.output  # cannot tell: nothing paid hangs on it
    assert "was not confirmed by 1 Redis replica(s) within 100 ms" in result.output
    assert "its remaining lines were not enqueued: run `relaydance batch resume rdb_" in (
        result.output
    )
    assert "Traceback" not in result.output


def test_a_redis_that_refuses_wait_submits_nothing_and_says_how_to_turn_the_wait_off(
    sim: SimulatorProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with RedisServer(extra=["--rename-command", "WAIT", ""]) as server:
        engine = make_engine(_settings(server.url, sim, tmp_path, redis_min_replicas=1))  # type: ignore[arg-type]
        try:
            job_id = make_job(engine)
            with caplog.at_level(logging.ERROR, logger="worker.infra.durability"):
                assert run_step(engine, "submit", job_id, seq=0).action == "stop"
            job = engine.store.get(job_id)
            assert job is not None and (job.state, job.billing) == (
                S.WAITING_FOR_SLOT,
                Billing.NONE,
            )
            assert sim.stats()["submissions"] == 0
            assert "this Redis refuses WAIT" in caplog.text
            assert "RELAYDANCE_REDIS_MIN_REPLICAS=0" in caplog.text
        finally:
            engine.close()
