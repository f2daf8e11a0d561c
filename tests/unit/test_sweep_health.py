"""Is the sweep alive, and will Redis keep the jobs? The judgements ``doctor``, ``/metrics``
and the workers' start-up share, worked out against a small stand-in for Redis.

The same against real Redis servers (a restart, an evicting one, a Sentinel group) is in
tests/integration/test_redis_restart.py, test_redis_durability.py and test_sentinel.py.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest
import redis

from config.settings import load_settings
from worker.infra.redis_checks import durability_findings, failover_finding, forgetful_redis_line
from worker.job.sweep_health import LOOPS_KEY, report_if_stopped, sweep_health
from worker.job.sweeper import LAST_SWEEP_KEY

NOW = 1_700_000_000.0
SETTINGS = load_settings(sweep_interval_seconds=20)  # stopped after 3 x 20 + 10 = 70 s


class StandIn:
    """The few Redis commands these judgements use, kept in dictionaries."""

    def __init__(self, *, info: dict[str, dict[str, Any]] | None = None,
                 config: dict[str, str] | None = None) -> None:  # fmt: skip
        self.values: dict[str, str] = {}
        self.zsets: dict[str, dict[str, float]] = {}
        self._info = info or {}
        self._config = config
        self.wait_refused = False  # a proxy or managed service without WAIT

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def delete(self, key: str) -> int:
        return 1 if self.values.pop(key, None) is not None else 0

    def set(self, key: str, value: str, *, nx: bool = False, ex: int | None = None) -> bool:
        if nx and key in self.values:
            return False
        self.values[key] = value
        return True

    def zadd(self, key: str, mapping: dict[str, float]) -> None:
        self.zsets.setdefault(key, {}).update(mapping)

    def zrangebyscore(self, key: str, low: float, high: str) -> list[str]:
        return [m for m, score in self.zsets.get(key, {}).items() if score >= low]

    def info(self, section: str) -> dict[str, Any]:
        return self._info.get(section, {})

    def wait(self, replicas: int, timeout_ms: int) -> int:
        if self.wait_refused:
            raise redis.ResponseError("unknown command 'WAIT'")
        return 0

    def config_get(self, name: str) -> dict[str, str]:
        if self._config is None:
            raise redis.ResponseError("unknown command 'CONFIG'")
        return {name: self._config[name]} if name in self._config else {}


def _fleet(*, last_ago: float | None, started_ago: list[float]) -> StandIn:
    client = StandIn()
    if last_ago is not None:
        client.set(LAST_SWEEP_KEY, repr(NOW - last_ago))
    for n, ago in enumerate(started_ago):
        client.zadd(LOOPS_KEY, {f"w{n}@host|{NOW - ago!r}": NOW - 1})
    return client


def _health(client: StandIn) -> Any:
    return sweep_health(client, SETTINGS, now=NOW)  # type: ignore[arg-type]


def test_a_recent_sweep_is_running() -> None:
    health = _health(_fleet(last_ago=12, started_ago=[600, 30]))
    assert (health.state, health.loops) == ("running", 2)
    assert health.describe() == "the sweep ran 12 s ago (2 worker(s) run its loop)"


def test_a_fleet_younger_than_one_interval_is_starting_not_failing() -> None:
    health = _health(_fleet(last_ago=None, started_ago=[5]))
    assert health.state == "starting"
    assert health.describe().startswith("starting: the workers started 5 s ago")
    # An old sweep from an earlier run of the fleet does not make a young one "stopped".
    assert _health(_fleet(last_ago=86_400, started_ago=[3])).state == "starting"


def test_workers_running_the_loop_with_no_sweep_for_several_intervals_is_stopped() -> None:
    health = _health(_fleet(last_ago=300, started_ago=[3600]))
    assert health.state == "stopped"
    assert health.describe().startswith("THE SWEEP HAS STOPPED: last completed 5 m ago, while 1")
    assert "restart the workers" in health.describe()


def test_no_worker_running_the_loop_says_to_start_one() -> None:
    health = _health(_fleet(last_ago=None, started_ago=[]))
    assert health.state == "absent"
    assert "no worker runs the sweep (last completed never)" in health.describe()
    assert "celery -A worker worker" in health.describe()


def test_a_stopped_sweep_is_told_once_an_hour_by_one_worker_and_its_end_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = _fleet(last_ago=300, started_ago=[3600])
    sent: list[tuple[str, tuple[Any, ...]]] = []
    engine = SimpleNamespace(
        redis=client, settings=SETTINGS.model_copy(update={"on_alert": "studio.page"}),
        send=lambda name, *args: sent.append((name, args)),
    )  # fmt: skip
    monkeypatch.setattr("worker.job.sweep_health.time.time", lambda: NOW)
    with caplog.at_level(logging.ERROR, logger="worker.job.alerts"):
        for _ in range(3):  # three workers' ticks
            assert report_if_stopped(engine).state == "stopped"  # type: ignore[arg-type]
    assert len(caplog.records) == 1 and "THE SWEEP HAS STOPPED" in caplog.records[0].message
    assert [(name, args[0]["kind"], args[0]["state"]) for name, args in sent] == [
        ("studio.page", "sweep_stopped", "started")
    ]
    del client.values["rd:alerts:sweep_stopped:fleet"]  # the hour passed
    with caplog.at_level(logging.ERROR, logger="worker.job.alerts"):
        report_if_stopped(engine)  # type: ignore[arg-type]
    assert len(caplog.records) == 2
    client.values[LAST_SWEEP_KEY] = repr(NOW)  # it works again: told once
    report_if_stopped(engine)  # type: ignore[arg-type]
    report_if_stopped(engine)  # type: ignore[arg-type]
    assert [args[0]["state"] for _, args in sent] == ["started", "started", "ended"]


def _redis(policy: str, *, aof: bool, save: str, fsync: str = "always",
           replicas: int = 0, to_write: int = 0) -> StandIn:  # fmt: skip
    return StandIn(
        info={"memory": {"maxmemory_policy": policy},
              "persistence": {"aof_enabled": int(aof)},
              "replication": {"role": "master", "connected_slaves": replicas}},
        config={"save": save, "appendfsync": fsync, "min-replicas-to-write": str(to_write)},
    )  # fmt: skip


def test_an_evicting_redis_without_persistence_fails_both_and_names_each_fix() -> None:
    findings = {f.name: f for f in durability_findings(_redis("allkeys-lru", aof=False, save=""))}  # type: ignore[arg-type]
    assert findings["eviction"].status == "fail"
    assert "maxmemory-policy is allkeys-lru" in findings["eviction"].detail
    assert "set maxmemory-policy noeviction" in findings["eviction"].detail
    assert findings["persistence"].status == "fail"
    assert "set appendonly yes" in findings["persistence"].detail
    line = forgetful_redis_line(list(findings.values()))
    assert line is not None and line.startswith("REDIS MAY FORGET JOBS: maxmemory-policy is")
    assert "persistence is off" in line and "docs/operations.md#failover" in line


def test_a_redis_that_keeps_everything_passes_and_the_worker_says_nothing() -> None:
    findings = durability_findings(_redis("noeviction", aof=True, save="", replicas=1))  # type: ignore[arg-type]
    assert [(f.name, f.status) for f in findings] == [
        ("eviction", "pass"), ("persistence", "pass"), ("replicas", "pass"),
        ("failover", "pass")]  # fmt: skip
    assert forgetful_redis_line(findings) is None


@pytest.mark.parametrize(
    ("client", "status", "words"),
    [
        (_redis("noeviction", aof=True, save="", fsync="everysec"), "warn", "fsync everysec"),
        (_redis("noeviction", aof=False, save="3600 1"), "warn", "snapshots only"),
        (StandIn(info={"persistence": {"aof_enabled": 0}}), "warn", "CONFIG refused"),
    ],
)
def test_weaker_persistence_warns_without_failing(client: StandIn, status: str, words: str) -> None:
    found = {f.name: f for f in durability_findings(client)}["persistence"]  # type: ignore[arg-type]
    assert (found.status, words in found.detail) == (status, True)


def test_replicas_are_reported_and_a_sentinel_group_without_one_warns() -> None:
    lone = {f.name: f for f in durability_findings(_redis("noeviction", aof=True, save=""))}  # type: ignore[arg-type]
    assert lone["replicas"].status == "skip" and "a lone Redis" in lone["replicas"].detail
    watched = durability_findings(_redis("noeviction", aof=True, save=""), sentinel=True)  # type: ignore[arg-type]
    assert watched[2].status == "warn" and "nothing to promote" in watched[2].detail


def _failover(client: StandIn, *, setting: int | None = None, sentinel: bool = False) -> Any:
    return failover_finding(client, setting=setting, wait_ms=500, sentinel=sentinel)  # type: ignore[arg-type]


def test_a_lone_redis_says_failover_safety_is_off_and_claims_wait_for_nothing() -> None:
    lone = _failover(_redis("noeviction", aof=True, save=""))
    assert lone.status == "skip" and lone.detail.startswith("failover safety is off (a lone Redis)")
    watched = _failover(_redis("noeviction", aof=True, save=""), sentinel=True)
    assert watched.status == "warn"  # sentinels with nothing to promote


def test_claims_wait_for_one_replica_by_default_and_zero_turns_it_off_with_a_warning() -> None:
    one = _failover(_redis("noeviction", aof=True, save="", replicas=3))
    assert one.status == "pass"
    assert one.detail.startswith("claims wait for 1 of 3 replica(s) before their POST (WAIT")
    assert "consider min-replicas-to-write 1" in one.detail  # replicas enough to spare one
    off = _failover(_redis("noeviction", aof=True, save="", replicas=1), setting=0)
    assert off.status == "warn" and "RELAYDANCE_REDIS_MIN_REPLICAS=0 with 1" in off.detail


def test_more_replicas_wanted_than_connected_fails_as_no_job_could_submit() -> None:
    found = _failover(_redis("noeviction", aof=True, save="", replicas=1), setting=2)
    assert found.status == "fail" and "no claim can be confirmed" in found.detail


def test_min_replicas_to_write_as_high_as_the_replicas_warns_that_one_loss_stops_writes() -> None:
    found = _failover(_redis("noeviction", aof=True, save="", replicas=1, to_write=1))
    assert found.status == "warn" and "losing one stops every write" in found.detail
    assert "consider" not in _failover(_redis("noeviction", aof=True, save="", replicas=1)).detail


def test_a_redis_that_refuses_wait_fails_as_no_claim_could_be_confirmed() -> None:
    client = _redis("noeviction", aof=True, save="", replicas=1)
    client.wait_refused = True
    found = _failover(client)
    assert found.status == "fail" and "refuses WAIT" in found.detail
    assert "RELAYDANCE_REDIS_MIN_REPLICAS=0" in found.detail
    assert _failover(client, setting=0).status == "warn"  # off: WAIT is never sent
