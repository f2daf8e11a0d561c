"""A real partition, then a failover, under a running fleet: nothing is paid twice.

A Sentinel group of real processes (tests/sentinel_group.py: a primary, two replicas,
three sentinels) serves a worker (and, with webhooks, the receiver) rendering ten jobs on
a key the simulator caps at four, each generating for 3 s. Once the first four are
submitted, both replicas stop reading (SIGSTOP); more than the kernel can buffer towards
them is written to the primary, then a marker, so that everything after it waits in the
primary's own memory. The first four finish inside the partition, so at least four
submissions fall due in it. The primary is SIGKILLed, the replicas resume, and the
sentinels promote one. The marker is gone on the new primary: the loss was real.

Before claims waited for a replica, the partition's submissions were sent, their claims
and task ids died with the primary, and the jobs were submitted again: paid twice. Now no
claim a replica has not confirmed is sent; every job ends done or, where the partition
took a claim or a recorded task back (two in most runs, four, the key's cap, seen once on
a loaded machine), ``submit_unknown``; none fails, none is paid twice, and the line moves
again at the first sweeps on the new primary.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import redis

from simulator.testing import SimulatorProcess
from tests.fleet import Fleet, fleet_env, point_this_process_at, wait_until, webhook_env
from tests.sentinel_group import MASTER, SentinelGroup
from worker.infra.redis_server import free_port
from worker.job.sweeper import LAST_SWEEP_KEY

pytestmark = pytest.mark.integration

MODEL = "doubao-seedance-2-0-fast-260128"
JOBS, CAP = 10, 4
MARKER = "partition:marker"
REFUSED = re.compile(r"job (rdj_[0-9a-f]{32}) key=\S+: not sent: ")


def _states(ids: list[str]) -> dict[str, int]:
    from tasks import get_job

    found: dict[str, int] = {}
    for job_id in ids:
        try:
            state = get_job(job_id).state.value
        except redis.RedisError:
            state = "unreadable"  # the election: asked again on the next turn
        found[state] = found.get(state, 0) + 1
    return found


def _in_doubt(ids: list[str]) -> list[str]:
    """The jobs left ``submit_unknown``."""
    from tasks import get_job

    return [job_id for job_id in ids if get_job(job_id).state.value == "submit_unknown"]


def _paid_once_at_most(sim: SimulatorProcess, ids: list[str], states: dict[str, int]) -> None:
    """No job failed; in doubt only jobs that held one of the key's slots around the loss
    (at most its cap), each with at most one task; no more tasks than jobs."""
    assert "failed" not in states, states
    tasks = {job_id: len(sim.tasks_for(job_id)) for job_id in _in_doubt(ids)}
    assert len(tasks) <= CAP and all(n <= 1 for n in tasks.values()), tasks
    assert len(_posted(sim, ids)) <= JOBS


def _posted(sim: SimulatorProcess, ids: list[str]) -> list[float]:
    """When the provider created each task of these jobs (one entry per task)."""
    return sorted(float(t["created_at"]) for job_id in ids for t in sim.tasks_for(job_id))


def _partition_env(mode: str, redis_url: str, sim_url: str, output: Path) -> dict[str, str]:
    """The fleet's settings: through Sentinel, claims waiting 300 ms for a replica."""
    web_port = free_port()
    if mode == "webhooks":
        env = webhook_env(redis_url, sim_url, web_port, output,
                          key="sk-test-partition", secret="partition-webhook-secret-Zq8Lm3RtV6wXy1Kb9NcD4pHs7JfG2aEu")  # fmt: skip
    else:
        env = fleet_env(redis_url=redis_url, sim_url=sim_url, output_dir=output)
    env |= {"RELAYDANCE_REDIS_SENTINEL_MASTER": MASTER, "RELAYDANCE_MAX_CONCURRENCY": str(CAP),
            "RELAYDANCE_REDIS_WAIT_MS": "300", "RELAYDANCE_SWEEP_INTERVAL_SECONDS": "1",
            "RELAYDANCE_SWEEP_GRACE_SECONDS": "2", "RELAYDANCE_STEP_GRACE_SECONDS": "5",
            "RELAYDANCE_HTTP_CALL_DEADLINE": "5"}  # fmt: skip
    return env


def _partition_until_claims_fall_due(
    group: SentinelGroup, primary: redis.Redis, fleet: Fleet, sim: SimulatorProcess, ids: list[str]
) -> None:
    """Cut the replicas off the primary and wait for a wave of claims none can confirm."""
    # The partition: from here on, nothing the primary acknowledges reaches a replica.
    group.pause_replica()
    group.fill_socket_buffers()
    primary.set(MARKER, "written during the partition")
    sent_before = len(_posted(sim, ids))

    def due_in_partition() -> set[str]:
        refused = {m.group(1) for line in fleet.log_lines(": not sent: ")
                   if (m := REFUSED.search(line))}  # fmt: skip
        return refused

    def fell_due() -> int:  # refused; or, before claims waited for a replica, sent
        return len(due_in_partition()) + len(_posted(sim, ids)) - sent_before

    # The first wave finishes; its slots fall to the next jobs, whose claims no replica
    # can confirm (before the change, they were sent: paid, and lost with the primary).
    assert wait_until(lambda: fell_due() >= CAP, timeout=60, interval=0.2), fleet.logs()
    assert len(_posted(sim, ids)) == sent_before  # not one of them was sent


@pytest.mark.timeout(300)
@pytest.mark.parametrize("mode", ["polling", "webhooks"])
def test_a_partition_then_failover_pays_for_no_job_twice(
    mode: str, sentinel_group: SentinelGroup, sim: SimulatorProcess, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from tasks import enqueue_render

    group = sentinel_group
    sim.configure(concurrency_cap=CAP, gen_time_mean=3.0, webhooks=mode == "webhooks",
                  webhook_retry_base=1.0, webhook_max_attempts=8)  # fmt: skip
    env = _partition_env(mode, group.url, sim.url, tmp_path / "renders")
    point_this_process_at(env, monkeypatch)
    (tmp_path / "logs").mkdir()
    fleet = Fleet(env, tmp_path / "logs", concurrency=8, web=mode == "webhooks")
    primary = group.primary_client()
    try:
        fleet.start()
        ids = [enqueue_render({"model": MODEL, "prompt": f"partition {n}", "seconds": 5})
               for n in range(JOBS)]  # fmt: skip
        first_wave = wait_until(lambda: len(_posted(sim, ids)) >= CAP, timeout=60, interval=0.2)
        assert first_wave, fleet.logs()
        _partition_until_claims_fall_due(group, primary, fleet, sim, ids)
        group.kill_primary()
        # Nothing is sent without a primary; the fleet may find the new one before
        # wait_for_failover (every sentinel agreeing) returns.
        elected = time.time()
        group.resume_replica()
        group.wait_for_failover()
        new = group.new_primary_client()
        assert new.get(MARKER) is None, "the partition lost nothing: the test proves nothing"
        sweeps: set[float] = set()

        def settled() -> bool:
            sweeps.add(float(new.get(LAST_SWEEP_KEY) or 0))
            states = _states(ids)
            return states.get("done", 0) + states.get("submit_unknown", 0) == JOBS

        assert wait_until(settled, timeout=150, interval=0.05), f"{_states(ids)} {tmp_path}"
        states = _states(ids)
        after = [t for t in _posted(sim, ids) if t > elected]
    finally:
        fleet.stop()
        primary.close()
    assert sim.stats()["paid_twice"] == 0, fleet.logs()
    _paid_once_at_most(sim, ids, states)
    # The line moved again at once: a submission left before a third sweep on the new
    # primary began (the first one set it moving; the next may be under way meanwhile).
    assert after, "nothing was submitted after the election"
    began = sorted(s for s in sweeps if elected < s < after[0])
    assert len(began) <= 2, (began, after[0])
